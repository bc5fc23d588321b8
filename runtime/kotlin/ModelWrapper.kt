// Runs the exported LiteRT/TFLite model on Android with the pre- and post-processing its
// metadata.json describes: letterbox (detection tasks) or resize + centre crop (classification),
// then confidence filter, class-aware NMS and keypoints, or top-k classes, as the Python wrapper
// does (NCHW or NHWC input as the model declares it, float32 or int8 with its quantization; ultralytics' LiteRT exports give
// coordinates as fractions of the input size: metadata "box_units": "normalized").
//
// Not built where the package was made (it needs the Android SDK); the arithmetic follows
// runtimes/python/model_wrapper.py.
package com.visiontrainer.modelwrapper

import android.graphics.Bitmap
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.Rect
import org.json.JSONObject
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.Tensor
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.math.exp
import kotlin.math.floor
import kotlin.math.max
import kotlin.math.min

data class Prediction(
    val bbox: FloatArray?,  // x1, y1, x2, y2 in image pixels; null for classification
    val classId: Int,
    val className: String,
    val confidence: Float,
    val keypoints: List<FloatArray>? = null
)

class ModelWrapper(modelFile: File, metadataFile: File, threads: Int = 4) {
    private val metadata = JSONObject(metadataFile.readText())
    private val task = metadata.getString("task_type")
    private val classNames = metadata.getJSONObject("model").getJSONArray("class_names").let { a -> List(a.length()) { a.getString(it) } }
    // The dataset's class id of each output (packages made before they were recorded: the index).
    private val classIds = metadata.getJSONObject("model").optJSONArray("class_ids")?.let { a -> List(a.length()) { a.getInt(it) } } ?: classNames.indices.toList()
    private val resize = metadata.getJSONObject("preprocessing").getJSONObject("resize")
    private val inputH = resize.getJSONArray("size").getInt(0)
    private val inputW = resize.getJSONArray("size").getInt(1)
    private val normalize = metadata.getJSONObject("preprocessing").getJSONObject("normalize")
    private val post = metadata.getJSONObject("postprocessing")
    private val normalizedBoxes = post.optString("box_units", "pixels") == "normalized"
    private val interpreter = Interpreter(modelFile, Interpreter.Options().setNumThreads(threads))

    private class Transform(val scaleX: Double, val scaleY: Double, val padLeft: Double, val padTop: Double, val width: Int, val height: Int)

    private fun roundHalfUp(v: Double) = floor(v + 0.5).toInt()

    fun predict(bitmap: Bitmap): List<Prediction> {
        val (input, transform) = preprocess(bitmap)
        val outputs = HashMap<Int, Any>()
        val arrays = (0 until interpreter.outputTensorCount).map { i ->
            val tensor = interpreter.getOutputTensor(i)
            val bytes = if (isInteger(tensor)) 1 else 4
            FloatArray(tensor.shape().fold(1) { a, b -> a * b }).also { outputs[i] = ByteBuffer.allocateDirect(it.size * bytes).order(ByteOrder.nativeOrder()) }
        }
        interpreter.runForMultipleInputsOutputs(arrayOf(input), outputs)
        arrays.forEachIndexed { i, a ->
            val buffer = (outputs[i] as ByteBuffer).also { it.rewind() }
            val tensor = interpreter.getOutputTensor(i)
            if (isInteger(tensor)) {
                // Full-integer exports (static int8): dequantize with the output's scale and zero point.
                val q = tensor.quantizationParams()
                val unsigned = tensor.dataType() == DataType.UINT8
                for (j in a.indices) {
                    val raw = buffer.get().toInt()
                    a[j] = ((if (unsigned) raw and 0xff else raw) - q.zeroPoint) * q.scale
                }
            } else buffer.asFloatBuffer().get(a)
        }
        return if (task.endsWith("classification")) topK(arrays[0]) else decodeDetections(arrays[0], interpreter.getOutputTensor(0).shape(), transform)
    }

    private fun isInteger(tensor: Tensor) = tensor.dataType() == DataType.INT8 || tensor.dataType() == DataType.UINT8

    private fun preprocess(bitmap: Bitmap): Pair<ByteBuffer, Transform> {
        val w0 = bitmap.width
        val h0 = bitmap.height
        val canvasBitmap = Bitmap.createBitmap(inputW, inputH, Bitmap.Config.ARGB_8888)
        val canvas = Canvas(canvasBitmap)
        val paint = Paint(Paint.FILTER_BITMAP_FLAG)
        val transform: Transform
        when (resize.getString("method")) {
            "letterbox" -> {
                val fill = resize.optInt("fill_value", 114)
                canvas.drawColor(Color.rgb(fill, fill, fill))
                val r = min(inputH.toDouble() / h0, inputW.toDouble() / w0)
                val newW = roundHalfUp(w0 * r)
                val newH = roundHalfUp(h0 * r)
                val left = roundHalfUp((inputW - newW) / 2.0 - 0.1)
                val top = roundHalfUp((inputH - newH) / 2.0 - 0.1)
                canvas.drawBitmap(bitmap, null, Rect(left, top, left + newW, top + newH), paint)
                transform = Transform(newW.toDouble() / w0, newH.toDouble() / h0, left.toDouble(), top.toDouble(), w0, h0)
            }
            "resize_shorter_center_crop" -> {
                val cropPct = resize.optDouble("crop_pct", 1.0)
                val r = max(inputH / cropPct / h0, inputW / cropPct / w0)
                val newW = max(inputW, roundHalfUp(w0 * r))
                val newH = max(inputH, roundHalfUp(h0 * r))
                val left = roundHalfUp((newW - inputW) / 2.0)
                val top = roundHalfUp((newH - inputH) / 2.0)
                canvas.drawBitmap(bitmap, null, Rect(-left, -top, newW - left, newH - top), paint)
                transform = Transform(newW.toDouble() / w0, newH.toDouble() / h0, -left.toDouble(), -top.toDouble(), w0, h0)
            }
            else -> {
                canvas.drawBitmap(bitmap, null, Rect(0, 0, inputW, inputH), paint)
                transform = Transform(inputW.toDouble() / w0, inputH.toDouble() / h0, 0.0, 0.0, w0, h0)
            }
        }
        val standardize = normalize.getString("method") == "standardize"
        val mean = normalize.getJSONArray("mean")
        val std = normalize.getJSONArray("std")
        val inputTensor = interpreter.getInputTensor(0)
        // Full-integer exports (static int8) take the normalised values quantized with the input's scale and zero point.
        val quantized = isInteger(inputTensor)
        val buffer = ByteBuffer.allocateDirect((if (quantized) 1 else 4) * inputH * inputW * 3).order(ByteOrder.nativeOrder())
        val pixels = IntArray(inputW * inputH)
        canvasBitmap.getPixels(pixels, 0, inputW, 0, 0, inputW, inputH)
        // litert-torch exports keep torch's NCHW input ([1, 3, H, W]); TensorFlow-made ones take NHWC.
        val inputShape = inputTensor.shape()
        val channelsFirst = inputShape.size == 4 && inputShape[1] == 3
        val q = inputTensor.quantizationParams()
        val (low, high) = if (inputTensor.dataType() == DataType.UINT8) Pair(0, 255) else Pair(-128, 127)
        fun put(v: Float) {
            if (quantized) buffer.put(min(high, max(low, roundHalfUp((v / q.scale + q.zeroPoint).toDouble()))).toByte()) else buffer.putFloat(v)
        }
        fun value(p: Int, c: Int): Float {
            val channel = when (c) { 0 -> (p shr 16) and 0xff; 1 -> (p shr 8) and 0xff; else -> p and 0xff }  // RGB
            val v = if (standardize) channel / 255f else channel.toFloat()
            return (v - mean.getDouble(c).toFloat()) / std.getDouble(c).toFloat()
        }
        if (channelsFirst) {
            for (c in 0 until 3) for (p in pixels) put(value(p, c))
        } else {
            for (p in pixels) for (c in 0 until 3) put(value(p, c))
        }
        buffer.rewind()
        return Pair(buffer, transform)
    }

    private fun topK(values: FloatArray): List<Prediction> {
        val softmax = post.optJSONObject("softmax")
        val probs = if (softmax?.optBoolean("apply", true) != false) {
            val t = softmax?.optDouble("temperature", 1.0)?.toFloat() ?: 1f
            val m = values.reduce { a, b -> max(a, b) } / t
            val e = values.map { exp(it / t - m) }
            val s = e.sum()
            e.map { it / s }.toFloatArray()
        } else values
        val k = min(post.optInt("top_k", 5), probs.size)
        return probs.indices.sortedByDescending { probs[it] }.take(k).map { Prediction(null, classIds[it], classNames[it], probs[it]) }
    }

    private fun decodeDetections(d: FloatArray, shape: IntArray, t: Transform): List<Prediction> {
        val nms = post.getJSONObject("nms")
        val conf = nms.getDouble("confidence_threshold").toFloat()
        val iouThreshold = nms.getDouble("iou_threshold").toFloat()
        val maxDet = nms.getInt("max_detections")
        val anchors = shape[2]
        val nc = classNames.size
        val sx = if (normalizedBoxes) inputW.toFloat() else 1f
        val sy = if (normalizedBoxes) inputH.toFloat() else 1f
        data class Candidate(val anchor: Int, val score: Float, val cls: Int, val box: FloatArray)
        val candidates = ArrayList<Candidate>()
        for (a in 0 until anchors) {
            var best = Float.NEGATIVE_INFINITY
            var cls = 0
            for (c in 0 until nc) if (d[(4 + c) * anchors + a] > best) { best = d[(4 + c) * anchors + a]; cls = c }
            if (best > conf) {
                val cx = d[a] * sx; val cy = d[anchors + a] * sy; val w = d[2 * anchors + a] * sx; val h = d[3 * anchors + a] * sy
                candidates.add(Candidate(a, best, cls, floatArrayOf(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
            }
        }
        val order = candidates.indices.sortedByDescending { candidates[it].score }  // stable: ties keep anchor order
        val suppressed = BooleanArray(candidates.size)
        val keep = ArrayList<Int>()
        for (i in order) {
            if (suppressed[i]) continue
            keep.add(i)
            if (keep.size == maxDet) break
            val a = candidates[i].box
            for (j in candidates.indices) {
                if (suppressed[j] || j == i || candidates[j].cls != candidates[i].cls) continue
                val b = candidates[j].box
                val inter = max(0f, min(a[2], b[2]) - max(a[0], b[0])) * max(0f, min(a[3], b[3]) - max(a[1], b[1]))
                val union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
                if (union > 0 && inter / union > iouThreshold) suppressed[j] = true
            }
        }
        fun toX(x: Float) = min(t.width.toDouble(), max(0.0, (x - t.padLeft) / t.scaleX)).toFloat()
        fun toY(y: Float) = min(t.height.toDouble(), max(0.0, (y - t.padTop) / t.scaleY)).toFloat()
        val keypoints = metadata.getJSONObject("model").optJSONObject("keypoints")?.getJSONArray("shape")
        return keep.map { i ->
            val c = candidates[i]
            val kps = if (task == "pose_estimation" && keypoints != null) {
                val count = keypoints.getInt(0)
                val dims = keypoints.getInt(1)
                (0 until count).map { j ->
                    val base = 4 + nc + j * dims
                    val x = toX(d[base * anchors + c.anchor] * sx)
                    val y = toY(d[(base + 1) * anchors + c.anchor] * sy)
                    if (dims == 3) floatArrayOf(x, y, d[(base + 2) * anchors + c.anchor]) else floatArrayOf(x, y)
                }
            } else null
            Prediction(floatArrayOf(toX(c.box[0]), toY(c.box[1]), toX(c.box[2]), toY(c.box[3])), classIds[c.cls], classNames[c.cls], c.score, kps)
        }
    }

    fun close() = interpreter.close()
}
