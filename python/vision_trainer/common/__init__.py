"""What the timm and transformers adapters share, and what every framework uses: checkpoints of our
own format, metrics, the trainer-event protocol, the inference session, export validation and ONNX
passes, Grad-CAM."""
