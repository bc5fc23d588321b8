"""ultralytics (YOLO): training, inference and export, each an entry module of its own."""
