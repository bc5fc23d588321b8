// Runs the exported model on images and prints the predictions as JSON lines:
//   ./example ../../model.onnx ../../metadata.json image1.jpg [image2.png ...]
//   ./example --confidence 0.001 --iou 0.7 --max-detections 100 model.onnx metadata.json image.png
// Each line: {"image": "<path>", "predictions": [...]} (masks as COCO RLE).
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "model_wrapper.h"

int main(int argc, char** argv) {
  vision::Thresholds thresholds;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 < argc && a == "--confidence") thresholds.confidence = std::stof(argv[++i]);
    else if (i + 1 < argc && a == "--iou") thresholds.iou = std::stof(argv[++i]);
    else if (i + 1 < argc && a == "--max-detections") thresholds.max_detections = std::stoi(argv[++i]);
    else if (i + 1 < argc && a == "--top-k") thresholds.top_k = std::stoi(argv[++i]);
    else args.push_back(a);
  }
  if (args.size() < 3) {
    std::cerr << "usage: " << argv[0] << " [--confidence C] [--iou I] [--max-detections N] [--top-k K] model.onnx metadata.json image [image ...]\n";
    return 2;
  }
  try {
    vision::ModelWrapper model(args[0], args[1]);
    for (size_t i = 2; i < args.size(); ++i) {
      auto started = std::chrono::steady_clock::now();
      auto predictions = model.predict(args[i], thresholds);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      std::cout << "{\"image\": \"" << args[i] << "\", \"predictions\": " << vision::ModelWrapper::to_json(predictions)
                << ", \"elapsed_ms\": " << static_cast<int>(ms * 100) / 100.0 << "}" << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
