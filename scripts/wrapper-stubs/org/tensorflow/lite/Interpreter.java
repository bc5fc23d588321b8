package org.tensorflow.lite;

import java.io.File;
import java.util.Map;

public final class Interpreter implements AutoCloseable {
    public static class Options {
        public Options() {}

        public Options setNumThreads(int numThreads) { throw new RuntimeException("Stub!"); }
    }

    public Interpreter(File modelFile, Options options) { throw new RuntimeException("Stub!"); }

    public Tensor getInputTensor(int inputIndex) { throw new RuntimeException("Stub!"); }

    public int getOutputTensorCount() { throw new RuntimeException("Stub!"); }

    public Tensor getOutputTensor(int outputIndex) { throw new RuntimeException("Stub!"); }

    public void runForMultipleInputsOutputs(Object[] inputs, Map<Integer, Object> outputs) { throw new RuntimeException("Stub!"); }

    @Override
    public void close() { throw new RuntimeException("Stub!"); }
}
