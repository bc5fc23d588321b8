package org.tensorflow.lite;

public interface Tensor {
    int[] shape();

    DataType dataType();

    QuantizationParams quantizationParams();

    class QuantizationParams {
        public QuantizationParams(float scale, int zeroPoint) { throw new RuntimeException("Stub!"); }

        public float getScale() { throw new RuntimeException("Stub!"); }

        public int getZeroPoint() { throw new RuntimeException("Stub!"); }
    }
}
