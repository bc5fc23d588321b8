// Runs an exported ONNX vision model with OpenCV's DNN module and the pre- and post-processing
// its metadata.json describes: letterbox / resize + crop, normalisation, then class-aware NMS,
// instance masks, keypoints, softmax top-k or a semantic class map (one mask per class present),
// as the Python and Node wrappers do.
//
//   ModelWrapper model("model.onnx", "metadata.json");
//   std::vector<Prediction> predictions = model.predict("photo.jpg");
//
// Boxes are [x1, y1, x2, y2] in pixels of the original image.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

namespace vision {

struct Prediction {
  bool has_box = false;
  std::array<float, 4> bbox{};  // x1, y1, x2, y2 (detection tasks)
  int class_id = 0;  // the dataset's class id (metadata model.class_ids), not the output index
  std::string class_name;
  float confidence = 0.f;
  cv::Mat mask;                             // CV_8U, image size, 1 inside (instance segmentation)
  std::vector<std::vector<float>> keypoints;  // [x, y, confidence] per keypoint (pose)
};

// How input-tensor pixels map back to the original image: x = (x_in - pad_left) / scale_x.
struct Transform {
  double scale_x = 1, scale_y = 1, pad_left = 0, pad_top = 0;
  int width = 0, height = 0;
};

struct Thresholds {
  float confidence = -1;  // negative: metadata's default
  float iou = -1;
  int max_detections = -1;
  int top_k = -1;
};

class ModelWrapper {
 public:
  ModelWrapper(const std::string& model_path, const std::string& metadata_path);

  // Final predictions for an image file, or for a BGR image as cv::imread gives it.
  std::vector<Prediction> predict(const std::string& image_path, const Thresholds& thresholds = {});
  std::vector<Prediction> predict(const cv::Mat& bgr, const Thresholds& thresholds = {});

  // The steps predict() runs, for callers that batch or time them.
  cv::Mat preprocess(const cv::Mat& rgb, Transform& transform) const;
  std::vector<cv::Mat> infer(const cv::Mat& blob);
  std::vector<Prediction> postprocess(const std::vector<cv::Mat>& outputs, const Transform& transform, const Thresholds& thresholds = {}) const;

  const std::string& task() const { return task_; }
  const std::vector<std::string>& class_names() const { return class_names_; }

  // Predictions as the other wrappers print them (masks as COCO RLE).
  static std::string to_json(const std::vector<Prediction>& predictions);

 private:
  cv::dnn::Net net_;
  std::string task_;
  std::vector<std::string> class_names_;
  std::vector<int> class_ids_;
  // Pre-processing
  std::string resize_method_;
  int input_h_ = 0, input_w_ = 0;
  int fill_value_ = 114;
  double crop_pct_ = 1.0;
  int interpolation_ = 1;  // cv::INTER_LINEAR
  bool standardize_ = false;
  std::array<float, 3> mean_{}, std_{};
  bool bgr_ = false;
  bool embedded_preprocessing_ = false;
  bool preprocessing_included_ = true, postprocessing_included_ = true;
  int fixed_batch_ = 1;
  // Post-processing
  float confidence_ = 0.25f, iou_ = 0.45f, mask_threshold_ = 0.5f;
  int max_detections_ = 300, top_k_ = 5;
  bool softmax_ = true;
  float temperature_ = 1.f;
  bool normalized_boxes_ = false;
  int keypoint_count_ = 0, keypoint_dims_ = 0;
};

}  // namespace vision
