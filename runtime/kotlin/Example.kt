// Runs the exported model on one image and logs the predictions, e.g. from an Activity:
//   val predictions = runExample(File(filesDir, "model.tflite"), File(filesDir, "metadata.json"), File(filesDir, "photo.jpg"))
// Not built where the package was made (it needs the Android SDK).
package com.visiontrainer.modelwrapper

import android.graphics.BitmapFactory
import android.util.Log
import java.io.File

fun runExample(model: File, metadata: File, image: File): List<Prediction> {
    val wrapper = ModelWrapper(model, metadata)
    try {
        val bitmap = BitmapFactory.decodeFile(image.path) ?: error("cannot decode ${image.path}")
        val predictions = wrapper.predict(bitmap)
        for (p in predictions) {
            Log.i("ModelWrapper", "${p.className} ${"%.3f".format(p.confidence)} ${p.bbox?.joinToString(prefix = "[", postfix = "]") ?: ""}")
        }
        return predictions
    } finally {
        wrapper.close()
    }
}
