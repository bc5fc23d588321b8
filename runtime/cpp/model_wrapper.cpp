// See model_wrapper.h. The arithmetic (rounding, padding, NMS order, mask cropping) follows the
// Python wrapper line by line, so the wrappers agree on the same image.
#include "model_wrapper.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <variant>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace vision {
namespace {

// ---------------------------------------------------------------------------------------------
// A small JSON reader for metadata.json (OpenCV's FileStorage cannot read null).
// ---------------------------------------------------------------------------------------------

struct Json {
  std::variant<std::nullptr_t, bool, double, std::string, std::vector<Json>, std::map<std::string, Json>> value;

  const Json& operator[](const std::string& key) const {
    static const Json missing{nullptr};
    const auto* object = std::get_if<std::map<std::string, Json>>(&value);
    if (!object) return missing;
    auto it = object->find(key);
    return it == object->end() ? missing : it->second;
  }
  const std::vector<Json>& items() const {
    static const std::vector<Json> empty;
    const auto* array = std::get_if<std::vector<Json>>(&value);
    return array ? *array : empty;
  }
  bool is_null() const { return std::holds_alternative<std::nullptr_t>(value); }
  bool is_number() const { return std::holds_alternative<double>(value); }
  double number(double fallback = 0) const { return is_number() ? std::get<double>(value) : fallback; }
  bool boolean(bool fallback) const { return std::holds_alternative<bool>(value) ? std::get<bool>(value) : fallback; }
  std::string string(const std::string& fallback = "") const {
    return std::holds_alternative<std::string>(value) ? std::get<std::string>(value) : fallback;
  }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}
  Json parse() {
    Json v = value();
    skip();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) { throw std::runtime_error("metadata.json: " + what + " at offset " + std::to_string(i_)); }
  void skip() { while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_; }
  bool take(char c) { skip(); if (i_ < s_.size() && s_[i_] == c) { ++i_; return true; } return false; }
  void expect(char c) { if (!take(c)) fail(std::string("expected '") + c + "'"); }

  Json value() {
    skip();
    if (i_ >= s_.size()) fail("unexpected end");
    char c = s_[i_];
    if (c == '{') return object();
    if (c == '[') return array();
    if (c == '"') return Json{str()};
    if (s_.compare(i_, 4, "true") == 0) { i_ += 4; return Json{true}; }
    if (s_.compare(i_, 5, "false") == 0) { i_ += 5; return Json{false}; }
    if (s_.compare(i_, 4, "null") == 0) { i_ += 4; return Json{nullptr}; }
    size_t used = 0;
    double d = std::stod(s_.substr(i_, 64), &used);
    if (used == 0) fail("bad value");
    i_ += used;
    return Json{d};
  }
  Json object() {
    std::map<std::string, Json> out;
    expect('{');
    if (take('}')) return Json{out};
    do {
      skip();
      std::string key = str();
      expect(':');
      out.emplace(key, value());
    } while (take(','));
    expect('}');
    return Json{out};
  }
  Json array() {
    std::vector<Json> out;
    expect('[');
    if (take(']')) return Json{out};
    do out.push_back(value());
    while (take(','));
    expect(']');
    return Json{out};
  }
  std::string str() {
    skip();
    if (s_[i_] != '"') fail("expected a string");
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') { out += c; continue; }
      char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          unsigned code = std::stoul(s_.substr(i_, 4), nullptr, 16);
          i_ += 4;
          if (code < 0x80) out += static_cast<char>(code);
          else if (code < 0x800) { out += static_cast<char>(0xC0 | (code >> 6)); out += static_cast<char>(0x80 | (code & 0x3F)); }
          else { out += static_cast<char>(0xE0 | (code >> 12)); out += static_cast<char>(0x80 | ((code >> 6) & 0x3F)); out += static_cast<char>(0x80 | (code & 0x3F)); }
          break;
        }
        default: out += e;
      }
    }
    ++i_;
    return out;
  }
};

Json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return JsonParser(buffer.str()).parse();
}

int round_half_up(double v) { return static_cast<int>(std::floor(v + 0.5)); }

constexpr float kMaxWh = 7680.f;  // class offset for class-aware NMS (as ultralytics)
constexpr int kMaxNms = 30000;

std::vector<int> nms(const std::vector<std::array<float, 4>>& boxes, const std::vector<float>& scores, float iou_threshold) {
  std::vector<int> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  std::vector<char> suppressed(scores.size(), 0);
  std::vector<int> keep;
  auto area = [&](int i) { return (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]); };
  for (int i : order) {
    if (suppressed[i]) continue;
    keep.push_back(i);
    for (size_t j = 0; j < boxes.size(); ++j) {
      if (suppressed[j] || static_cast<int>(j) == i) continue;
      float w = std::min(boxes[i][2], boxes[j][2]) - std::max(boxes[i][0], boxes[j][0]);
      float h = std::min(boxes[i][3], boxes[j][3]) - std::max(boxes[i][1], boxes[j][1]);
      float inter = std::max(0.f, w) * std::max(0.f, h);
      float uni = area(i) + area(static_cast<int>(j)) - inter;
      if (uni > 0 && inter / uni > iou_threshold) suppressed[j] = 1;
    }
  }
  return keep;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string number(double v) {
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}

}  // namespace

ModelWrapper::ModelWrapper(const std::string& model_path, const std::string& metadata_path) {
  Json m = read_json(metadata_path);
  if (m["export_format"].string() != "onnx") throw std::runtime_error("the C++ wrapper runs ONNX models; this package holds " + m["export_format"].string());
  task_ = m["task_type"].string();
  for (const Json& n : m["model"]["class_names"].items()) class_names_.push_back(n.string());
  // The dataset's class id of each output; packages made before they were recorded: the index.
  const Json& ids = m["model"]["class_ids"];
  if (!ids.is_null()) {
    for (const Json& id : ids.items()) class_ids_.push_back(static_cast<int>(id.number()));
  } else {
    for (size_t i = 0; i < class_names_.size(); ++i) class_ids_.push_back(static_cast<int>(i));
  }
  const Json& batch = m["model"]["inputs"].items().at(0)["shape"].items().at(0);
  fixed_batch_ = batch.is_number() ? std::max(1, static_cast<int>(batch.number())) : 1;
  const Json& kp = m["model"]["keypoints"];
  if (!kp.is_null()) {
    keypoint_count_ = static_cast<int>(kp["shape"].items().at(0).number());
    keypoint_dims_ = static_cast<int>(kp["shape"].items().at(1).number());
  }

  const Json& pre = m["preprocessing"];
  const Json& resize = pre["resize"];
  resize_method_ = resize["method"].string();
  input_h_ = static_cast<int>(resize["size"].items().at(0).number());
  input_w_ = static_cast<int>(resize["size"].items().at(1).number());
  fill_value_ = static_cast<int>(resize["fill_value"].number(114));
  crop_pct_ = resize["crop_pct"].number(1.0);
  const std::string interp = resize["interpolation"].string("bilinear");
  interpolation_ = interp == "bicubic" ? cv::INTER_CUBIC : interp == "nearest" ? cv::INTER_NEAREST : cv::INTER_LINEAR;
  standardize_ = pre["normalize"]["method"].string() == "standardize";
  for (int c = 0; c < 3; ++c) {
    mean_[c] = static_cast<float>(pre["normalize"]["mean"].items().at(c).number());
    std_[c] = static_cast<float>(pre["normalize"]["std"].items().at(c).number());
  }
  bgr_ = pre["channel_order"].string("RGB") == "BGR";
  embedded_preprocessing_ = pre["embedded"].boolean(false);
  preprocessing_included_ = pre["included"].boolean(true);
  postprocessing_included_ = m["postprocessing"]["included"].boolean(true);

  const Json& post = m["postprocessing"];
  confidence_ = static_cast<float>(post["nms"]["confidence_threshold"].number(0.25));
  iou_ = static_cast<float>(post["nms"]["iou_threshold"].number(0.45));
  max_detections_ = static_cast<int>(post["nms"]["max_detections"].number(300));
  mask_threshold_ = static_cast<float>(post["mask_threshold"].number(0.5));
  softmax_ = post["softmax"]["apply"].boolean(true);
  temperature_ = static_cast<float>(post["softmax"]["temperature"].number(1.0));
  top_k_ = static_cast<int>(post["top_k"].number(5));
  normalized_boxes_ = post["box_units"].string("pixels") == "normalized";

  net_ = cv::dnn::readNetFromONNX(model_path);
  net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
}

cv::Mat ModelWrapper::preprocess(const cv::Mat& rgb, Transform& t) const {
  const int h0 = rgb.rows, w0 = rgb.cols;
  cv::Mat canvas;
  if (resize_method_ == "letterbox") {
    double r = std::min(static_cast<double>(input_h_) / h0, static_cast<double>(input_w_) / w0);
    int new_w = round_half_up(w0 * r), new_h = round_half_up(h0 * r);
    cv::Mat resized = rgb;
    if (new_w != w0 || new_h != h0) cv::resize(rgb, resized, cv::Size(new_w, new_h), 0, 0, interpolation_);
    int top = round_half_up((input_h_ - new_h) / 2.0 - 0.1), left = round_half_up((input_w_ - new_w) / 2.0 - 0.1);
    cv::copyMakeBorder(resized, canvas, top, input_h_ - new_h - top, left, input_w_ - new_w - left, cv::BORDER_CONSTANT,
                       cv::Scalar(fill_value_, fill_value_, fill_value_));
    t = {static_cast<double>(new_w) / w0, static_cast<double>(new_h) / h0, static_cast<double>(left), static_cast<double>(top), w0, h0};
  } else if (resize_method_ == "resize_shorter_center_crop") {
    double r = std::max(input_h_ / crop_pct_ / h0, input_w_ / crop_pct_ / w0);
    int new_w = std::max(input_w_, round_half_up(w0 * r)), new_h = std::max(input_h_, round_half_up(h0 * r));
    cv::Mat resized = rgb;
    if (new_w != w0 || new_h != h0) cv::resize(rgb, resized, cv::Size(new_w, new_h), 0, 0, interpolation_);
    int top = round_half_up((new_h - input_h_) / 2.0), left = round_half_up((new_w - input_w_) / 2.0);
    canvas = resized(cv::Rect(left, top, input_w_, input_h_));
    t = {static_cast<double>(new_w) / w0, static_cast<double>(new_h) / h0, static_cast<double>(-left), static_cast<double>(-top), w0, h0};
  } else {
    if (input_w_ != w0 || input_h_ != h0) cv::resize(rgb, canvas, cv::Size(input_w_, input_h_), 0, 0, interpolation_);
    else canvas = rgb;
    t = {static_cast<double>(input_w_) / w0, static_cast<double>(input_h_) / h0, 0, 0, w0, h0};
  }

  const int plane = input_h_ * input_w_;
  if (embedded_preprocessing_) {
    // The model normalises itself: it takes the pixels, uint8 NHWC (RGB).
    cv::Mat pixels;
    if (bgr_) cv::cvtColor(canvas, pixels, cv::COLOR_RGB2BGR);
    else pixels = canvas.clone();
    cv::Mat blob(std::vector<int>{fixed_batch_, input_h_, input_w_, 3}, CV_8U);
    const size_t image = static_cast<size_t>(plane) * 3;
    for (int b = 0; b < fixed_batch_; ++b) std::memcpy(blob.ptr<uchar>() + b * image, pixels.ptr<uchar>(), image);
    return blob;
  }
  cv::Mat blob(std::vector<int>{fixed_batch_, 3, input_h_, input_w_}, CV_32F);
  float* out = blob.ptr<float>();
  for (int y = 0; y < input_h_; ++y) {
    const uchar* row = canvas.ptr<uchar>(y);
    for (int x = 0; x < input_w_; ++x) {
      for (int c = 0; c < 3; ++c) {
        float v = static_cast<float>(row[x * 3 + (bgr_ ? 2 - c : c)]);
        if (standardize_) v = v / 255.0f;
        out[c * plane + y * input_w_ + x] = (v - mean_[c]) / std_[c];
      }
    }
  }
  for (int b = 1; b < fixed_batch_; ++b) std::copy(out, out + 3 * plane, out + b * 3 * plane);
  return blob;
}

std::vector<cv::Mat> ModelWrapper::infer(const cv::Mat& blob) {
  net_.setInput(blob);
  std::vector<cv::Mat> outputs;
  net_.forward(outputs, net_.getUnconnectedOutLayersNames());
  // Prototype masks (4-D) come after the detections, whatever order OpenCV lists its outputs in.
  std::stable_sort(outputs.begin(), outputs.end(), [](const cv::Mat& a, const cv::Mat& b) { return a.dims < b.dims; });
  return outputs;
}

std::vector<Prediction> ModelWrapper::postprocess(const std::vector<cv::Mat>& outputs, const Transform& t, const Thresholds& th) const {
  std::vector<Prediction> predictions;
  const cv::Mat& first = outputs.at(0);
  const float* d = first.ptr<float>();
  if (task_ == "semantic_segmentation") {
    // logits [batch, classes, h, w] at the input size: argmax per input pixel (the first of equal
    // scores), sampled at the input pixel each image pixel's centre falls in; one mask per class.
    const int classes = first.size[1], in_h = first.size[2], in_w = first.size[3];
    const int plane = in_h * in_w;
    std::vector<int> best(plane, 0);
    for (int p = 0; p < plane; ++p) {
      float score = d[p];
      for (int c = 1; c < classes; ++c) {
        if (d[c * plane + p] > score) {
          score = d[c * plane + p];
          best[p] = c;
        }
      }
    }
    cv::Mat map(t.height, t.width, CV_32S);
    for (int y = 0; y < t.height; ++y) {
      int v = std::min(in_h - 1, std::max(0, static_cast<int>(std::floor((y + 0.5) * t.scale_y + t.pad_top))));
      for (int x = 0; x < t.width; ++x) {
        int u = std::min(in_w - 1, std::max(0, static_cast<int>(std::floor((x + 0.5) * t.scale_x + t.pad_left))));
        map.at<int>(y, x) = best[v * in_w + u];
      }
    }
    for (int c = 0; c < static_cast<int>(class_names_.size()); ++c) {
      cv::Mat mask = map == c;  // 255 inside
      int count = cv::countNonZero(mask);
      if (!count) continue;
      Prediction p;
      p.class_id = class_ids_[c];
      p.class_name = class_names_[c];
      p.confidence = static_cast<float>(static_cast<double>(count) / (t.width * t.height));
      p.mask = mask / 255;
      predictions.push_back(p);
    }
    return predictions;
  }
  if (task_ == "image_classification" || task_ == "zero_shot_classification") {
    const int n = static_cast<int>(class_names_.size());
    std::vector<float> probs(d, d + n);
    if (softmax_) {
      float mx = *std::max_element(probs.begin(), probs.end()) / temperature_;
      double sum = 0;
      for (float& p : probs) sum += (p = static_cast<float>(std::exp(p / temperature_ - mx)));
      for (float& p : probs) p = static_cast<float>(p / sum);
    }
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
    int k = std::min(th.top_k > 0 ? th.top_k : top_k_, n);
    for (int i = 0; i < k; ++i) {
      Prediction p;
      p.class_id = class_ids_[order[i]];
      p.class_name = class_names_[order[i]];
      p.confidence = probs[order[i]];
      predictions.push_back(p);
    }
    return predictions;
  }

  const float conf = th.confidence >= 0 ? th.confidence : confidence_;
  const float iou = th.iou >= 0 ? th.iou : iou_;
  const int max_det = th.max_detections > 0 ? th.max_detections : max_detections_;
  const int nc = static_cast<int>(class_names_.size());
  const int rows = first.size[1], anchors = first.size[2];
  const float sx = normalized_boxes_ ? static_cast<float>(input_w_) : 1.f, sy = normalized_boxes_ ? static_cast<float>(input_h_) : 1.f;
  struct Candidate { int anchor; float score; int cls; };
  std::vector<Candidate> candidates;
  for (int a = 0; a < anchors; ++a) {
    int cls = 0;
    float best = -INFINITY;
    for (int c = 0; c < nc; ++c) {
      float s = d[(4 + c) * anchors + a];
      if (s > best) { best = s; cls = c; }
    }
    if (best > conf) candidates.push_back({a, best, cls});
  }
  if (static_cast<int>(candidates.size()) > kMaxNms) {
    std::stable_sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
    candidates.resize(kMaxNms);
  }
  std::vector<std::array<float, 4>> boxes, shifted;
  std::vector<float> scores;
  for (const Candidate& c : candidates) {
    float cx = d[c.anchor] * sx, cy = d[anchors + c.anchor] * sy, w = d[2 * anchors + c.anchor] * sx, h = d[3 * anchors + c.anchor] * sy;
    std::array<float, 4> b{cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2};
    boxes.push_back(b);
    float off = c.cls * kMaxWh;
    shifted.push_back({b[0] + off, b[1] + off, b[2] + off, b[3] + off});
    scores.push_back(c.score);
  }
  std::vector<int> keep = nms(shifted, scores, iou);
  if (static_cast<int>(keep.size()) > max_det) keep.resize(max_det);

  auto to_image_x = [&](double x) { return static_cast<float>(std::clamp((x - t.pad_left) / t.scale_x, 0.0, static_cast<double>(t.width))); };
  auto to_image_y = [&](double y) { return static_cast<float>(std::clamp((y - t.pad_top) / t.scale_y, 0.0, static_cast<double>(t.height))); };
  for (int k : keep) {
    const Candidate& c = candidates[k];
    Prediction p;
    p.has_box = true;
    p.bbox = {to_image_x(boxes[k][0]), to_image_y(boxes[k][1]), to_image_x(boxes[k][2]), to_image_y(boxes[k][3])};
    p.class_id = class_ids_[c.cls];
    p.class_name = class_names_[c.cls];
    p.confidence = c.score;
    if (task_ == "pose_estimation") {
      for (int j = 0; j < keypoint_count_; ++j) {
        int base = 4 + nc + j * keypoint_dims_;
        std::vector<float> kp{to_image_x(d[base * anchors + c.anchor] * sx), to_image_y(d[(base + 1) * anchors + c.anchor] * sy)};
        if (keypoint_dims_ == 3) kp.push_back(d[(base + 2) * anchors + c.anchor]);
        p.keypoints.push_back(kp);
      }
    }
    predictions.push_back(p);
  }

  if (task_ == "instance_segmentation" && !predictions.empty()) {
    const cv::Mat& protos = outputs.at(1);
    const int nm = protos.size[1], mh = protos.size[2], mw = protos.size[3];
    cv::Mat proto_rows(nm, mh * mw, CV_32F, const_cast<float*>(protos.ptr<float>()));
    const double px = static_cast<double>(mw) / input_w_, py = static_cast<double>(mh) / input_h_;
    int c0 = std::max(0, round_half_up(t.pad_left * px - 0.1)), r0 = std::max(0, round_half_up(t.pad_top * py - 0.1));
    int c1 = std::min(mw, round_half_up((t.pad_left + t.width * t.scale_x) * px + 0.1));
    int r1 = std::min(mh, round_half_up((t.pad_top + t.height * t.scale_y) * py + 0.1));
    const float logit_threshold = std::log(mask_threshold_ / (1 - mask_threshold_));
    for (size_t i = 0; i < predictions.size(); ++i) {
      const int anchor = candidates[keep[i]].anchor;
      cv::Mat coef(1, nm, CV_32F);
      for (int m = 0; m < nm; ++m) coef.at<float>(m) = d[(4 + nc + m) * anchors + anchor];
      cv::Mat product = coef * proto_rows;
      cv::Mat logits = product.reshape(1, mh);
      cv::Mat full;
      cv::resize(logits(cv::Range(r0, r1), cv::Range(c0, c1)), full, cv::Size(t.width, t.height), 0, 0, cv::INTER_LINEAR);
      cv::Mat mask = cv::Mat::zeros(t.height, t.width, CV_8U);
      const auto& b = predictions[i].bbox;
      for (int y = 0; y < t.height; ++y) {
        if (y < b[1] || y >= b[3]) continue;
        const float* row = full.ptr<float>(y);
        uchar* out = mask.ptr<uchar>(y);
        for (int x = 0; x < t.width; ++x) out[x] = (x >= b[0] && x < b[2] && row[x] > logit_threshold) ? 1 : 0;
      }
      predictions[i].mask = mask;
    }
  }
  return predictions;
}

std::vector<Prediction> ModelWrapper::predict(const cv::Mat& bgr, const Thresholds& thresholds) {
  if (!preprocessing_included_ || !postprocessing_included_) {
    throw std::runtime_error("this package was exported without pre- or post-processing (INCLUDE_PREPROCESSING / INCLUDE_POSTPROCESSING=false): "
                             "use infer() with a preprocessed blob and read its raw outputs");
  }
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  Transform t;
  cv::Mat blob = preprocess(rgb, t);
  return postprocess(infer(blob), t, thresholds);
}

std::vector<Prediction> ModelWrapper::predict(const std::string& image_path, const Thresholds& thresholds) {
  cv::Mat bgr = cv::imread(image_path, cv::IMREAD_COLOR);
  if (bgr.empty()) throw std::runtime_error("cannot read image " + image_path);
  return predict(bgr, thresholds);
}

std::string ModelWrapper::to_json(const std::vector<Prediction>& predictions) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < predictions.size(); ++i) {
    const Prediction& p = predictions[i];
    if (i) o << ", ";
    o << '{';
    if (p.has_box) o << "\"bbox\": [" << number(p.bbox[0]) << ", " << number(p.bbox[1]) << ", " << number(p.bbox[2]) << ", " << number(p.bbox[3]) << "], ";
    o << "\"class_id\": " << p.class_id << ", \"class_name\": \"" << escape(p.class_name) << "\", \"confidence\": " << number(p.confidence);
    if (!p.mask.empty()) {
      // COCO uncompressed RLE: column-major runs, starting with zeros.
      o << ", \"mask\": {\"size\": [" << p.mask.rows << ", " << p.mask.cols << "], \"counts\": [";
      int current = 0, run = 0;
      bool first = true;
      for (int x = 0; x < p.mask.cols; ++x) {
        for (int y = 0; y < p.mask.rows; ++y) {
          int v = p.mask.at<uchar>(y, x) ? 1 : 0;
          if (v != current) {
            o << (first ? "" : ", ") << run;
            first = false;
            run = 0;
            current = v;
          }
          ++run;
        }
      }
      o << (first ? "" : ", ") << run << "]}";
    }
    if (!p.keypoints.empty()) {
      o << ", \"keypoints\": [";
      for (size_t j = 0; j < p.keypoints.size(); ++j) {
        o << (j ? ", " : "") << '[';
        for (size_t v = 0; v < p.keypoints[j].size(); ++v) o << (v ? ", " : "") << number(p.keypoints[j][v]);
        o << ']';
      }
      o << ']';
    }
    o << '}';
  }
  o << ']';
  return o.str();
}

}  // namespace vision
