// Runs the exported CoreML model with the pre- and post-processing its metadata.json describes:
// letterbox (detection tasks) or resize + centre crop (classification), then confidence filter,
// class-aware NMS, masks and keypoints, or top-k classes, as the Python, Node and C++ wrappers do.
// Boxes are [x1, y1, x2, y2] in pixels of the original image.
//
// Not built where the package was made (it needs Xcode on macOS); the arithmetic follows
// runtimes/python/model_wrapper.py.
import CoreGraphics
import CoreML
import CoreVideo
import Foundation

public struct Prediction {
    public let bbox: [Float]  // empty for classification
    public let classId: Int
    public let className: String
    public let confidence: Float
    public var mask: [UInt8]? = nil  // row-major, image size, 1 inside (instance segmentation)
    public var keypoints: [[Float]]? = nil  // [x, y, confidence] (pose)
}

struct Metadata: Decodable {
    struct Resize: Decodable { let method: String; let size: [Int]; let fill_value: Int?; let crop_pct: Double? }
    struct Preprocessing: Decodable { let resize: Resize }
    struct Nms: Decodable { let iou_threshold: Float; let confidence_threshold: Float; let max_detections: Int }
    struct Softmax: Decodable { let apply: Bool; let temperature: Float }
    struct Postprocessing: Decodable {
        let nms: Nms?
        let mask_threshold: Float?
        let softmax: Softmax?
        let top_k: Int?
    }
    struct Keypoints: Decodable { let shape: [Int] }
    /// class_ids: the dataset's class id of each output (absent in packages made before they were recorded: the index).
    struct Model: Decodable { let class_names: [String]; let class_ids: [Int]?; let keypoints: Keypoints? }
    let task_type: String
    let model: Model
    let preprocessing: Preprocessing
    let postprocessing: Postprocessing
}

public final class ModelWrapper {
    private let model: MLModel
    private let metadata: Metadata
    private let inputName: String
    private let inputHeight: Int
    private let inputWidth: Int

    /// `modelURL`: the package's model.mlpackage (compiled here) or an already compiled .mlmodelc.
    public init(modelURL: URL, metadataURL: URL) throws {
        metadata = try JSONDecoder().decode(Metadata.self, from: Data(contentsOf: metadataURL))
        let compiled = modelURL.pathExtension == "mlmodelc" ? modelURL : try MLModel.compileModel(at: modelURL)
        model = try MLModel(contentsOf: compiled)
        inputName = model.modelDescription.inputDescriptionsByName.keys.sorted().first ?? "image"
        inputHeight = metadata.preprocessing.resize.size[0]
        inputWidth = metadata.preprocessing.resize.size[1]
    }

    public func predict(_ image: CGImage) throws -> [Prediction] {
        let (buffer, transform) = try preprocess(image)
        let input = try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(pixelBuffer: buffer)])
        let output = try model.prediction(from: input)
        let arrays = output.featureNames.sorted().compactMap { output.featureValue(for: $0)?.multiArrayValue }
        if metadata.task_type.hasSuffix("classification") {
            // ultralytics' CoreML classifiers return class probabilities as a dictionary.
            if let dict = output.featureNames.compactMap({ output.featureValue(for: $0)?.dictionaryValue }).first {
                let probs = metadata.model.class_names.map { Float(truncating: dict[$0 as NSString] ?? 0) }
                return topK(probs, applySoftmax: false)
            }
            return topK(floats(arrays[0]), applySoftmax: metadata.postprocessing.softmax?.apply ?? true)
        }
        // The detections are the 3-D output; prototype masks (segmentation) the 4-D one.
        let detections = arrays.first { $0.shape.count == 3 }!
        let protos = arrays.first { $0.shape.count == 4 }
        return decodeDetections(detections, protos: protos, transform: transform)
    }

    // MARK: Pre-processing

    struct Transform { let scaleX: Double; let scaleY: Double; let padLeft: Double; let padTop: Double; let width: Int; let height: Int }

    private func preprocess(_ image: CGImage) throws -> (CVPixelBuffer, Transform) {
        let w0 = image.width, h0 = image.height
        var buffer: CVPixelBuffer?
        CVPixelBufferCreate(kCFAllocatorDefault, inputWidth, inputHeight, kCVPixelFormatType_32BGRA, nil, &buffer)
        guard let pixels = buffer else { throw NSError(domain: "ModelWrapper", code: 1, userInfo: [NSLocalizedDescriptionKey: "cannot allocate the input buffer"]) }
        CVPixelBufferLockBaseAddress(pixels, [])
        defer { CVPixelBufferUnlockBaseAddress(pixels, []) }
        let context = CGContext(data: CVPixelBufferGetBaseAddress(pixels), width: inputWidth, height: inputHeight, bitsPerComponent: 8,
                                bytesPerRow: CVPixelBufferGetBytesPerRow(pixels), space: CGColorSpaceCreateDeviceRGB(),
                                bitmapInfo: CGImageAlphaInfo.noneSkipFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)!
        context.interpolationQuality = .medium
        let resize = metadata.preprocessing.resize
        let roundHalfUp = { (v: Double) -> Int in Int((v + 0.5).rounded(.down)) }
        var transform: Transform
        var rect: CGRect
        if resize.method == "letterbox" {
            let fill = CGFloat(resize.fill_value ?? 114) / 255
            context.setFillColor(red: fill, green: fill, blue: fill, alpha: 1)
            context.fill(CGRect(x: 0, y: 0, width: inputWidth, height: inputHeight))
            let r = min(Double(inputHeight) / Double(h0), Double(inputWidth) / Double(w0))
            let newW = roundHalfUp(Double(w0) * r), newH = roundHalfUp(Double(h0) * r)
            let left = roundHalfUp(Double(inputWidth - newW) / 2 - 0.1), top = roundHalfUp(Double(inputHeight - newH) / 2 - 0.1)
            // CoreGraphics' origin is bottom-left.
            rect = CGRect(x: left, y: inputHeight - top - newH, width: newW, height: newH)
            transform = Transform(scaleX: Double(newW) / Double(w0), scaleY: Double(newH) / Double(h0), padLeft: Double(left), padTop: Double(top), width: w0, height: h0)
        } else if resize.method == "resize_shorter_center_crop" {
            let cropPct = resize.crop_pct ?? 1
            let r = max(Double(inputHeight) / cropPct / Double(h0), Double(inputWidth) / cropPct / Double(w0))
            let newW = max(inputWidth, roundHalfUp(Double(w0) * r)), newH = max(inputHeight, roundHalfUp(Double(h0) * r))
            let left = roundHalfUp(Double(newW - inputWidth) / 2), top = roundHalfUp(Double(newH - inputHeight) / 2)
            rect = CGRect(x: -left, y: inputHeight - (newH - top), width: newW, height: newH)
            transform = Transform(scaleX: Double(newW) / Double(w0), scaleY: Double(newH) / Double(h0), padLeft: Double(-left), padTop: Double(-top), width: w0, height: h0)
        } else {
            rect = CGRect(x: 0, y: 0, width: inputWidth, height: inputHeight)
            transform = Transform(scaleX: Double(inputWidth) / Double(w0), scaleY: Double(inputHeight) / Double(h0), padLeft: 0, padTop: 0, width: w0, height: h0)
        }
        context.draw(image, in: rect)
        return (pixels, transform)
    }

    // MARK: Post-processing

    private func floats(_ array: MLMultiArray) -> [Float] {
        (0..<array.count).map { array[$0].floatValue }
    }

    private func topK(_ values: [Float], applySoftmax: Bool) -> [Prediction] {
        var probs = values
        if applySoftmax {
            let t = metadata.postprocessing.softmax?.temperature ?? 1
            let m = (values.max() ?? 0) / t
            let e = values.map { exp($0 / t - m) }
            let s = e.reduce(0, +)
            probs = e.map { $0 / s }
        }
        let k = min(metadata.postprocessing.top_k ?? 5, probs.count)
        return probs.indices.sorted { probs[$0] > probs[$1] }.prefix(k).map {
            Prediction(bbox: [], classId: classId($0), className: metadata.model.class_names[$0], confidence: probs[$0])
        }
    }

    private func classId(_ index: Int) -> Int { metadata.model.class_ids?[index] ?? index }

    private func decodeDetections(_ output: MLMultiArray, protos: MLMultiArray?, transform t: Transform) -> [Prediction] {
        let nms = metadata.postprocessing.nms!
        let nc = metadata.model.class_names.count
        let anchors = output.shape[2].intValue
        let d = floats(output)
        var candidates: [(anchor: Int, score: Float, cls: Int, box: [Float])] = []
        for a in 0..<anchors {
            var best = -Float.infinity, cls = 0
            for c in 0..<nc where d[(4 + c) * anchors + a] > best { best = d[(4 + c) * anchors + a]; cls = c }
            if best > nms.confidence_threshold {
                let cx = d[a], cy = d[anchors + a], w = d[2 * anchors + a], h = d[3 * anchors + a]
                candidates.append((a, best, cls, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
            }
        }
        // Greedy class-aware NMS, best first (ties keep anchor order).
        let order = candidates.indices.sorted { candidates[$0].score > candidates[$1].score || (candidates[$0].score == candidates[$1].score && $0 < $1) }
        var suppressed = [Bool](repeating: false, count: candidates.count)
        var keep: [Int] = []
        for i in order where !suppressed[i] {
            keep.append(i)
            if keep.count == nms.max_detections { break }
            for j in candidates.indices where !suppressed[j] && j != i && candidates[j].cls == candidates[i].cls {
                let a = candidates[i].box, b = candidates[j].box
                let inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
                let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
                if union > 0 && inter / union > nms.iou_threshold { suppressed[j] = true }
            }
        }
        let toX = { (x: Float) -> Float in Float(min(Double(t.width), max(0, (Double(x) - t.padLeft) / t.scaleX))) }
        let toY = { (y: Float) -> Float in Float(min(Double(t.height), max(0, (Double(y) - t.padTop) / t.scaleY))) }
        var predictions: [Prediction] = keep.map { i in
            let c = candidates[i]
            var p = Prediction(bbox: [toX(c.box[0]), toY(c.box[1]), toX(c.box[2]), toY(c.box[3])], classId: classId(c.cls), className: metadata.model.class_names[c.cls], confidence: c.score)
            if let kp = metadata.model.keypoints, metadata.task_type == "pose_estimation" {
                let (count, dims) = (kp.shape[0], kp.shape[1])
                p.keypoints = (0..<count).map { j in
                    let base = 4 + nc + j * dims
                    var k = [toX(d[base * anchors + c.anchor]), toY(d[(base + 1) * anchors + c.anchor])]
                    if dims == 3 { k.append(d[(base + 2) * anchors + c.anchor]) }
                    return k
                }
            }
            return p
        }
        if let protos = protos, metadata.task_type == "instance_segmentation" {
            let nm = protos.shape[1].intValue, mh = protos.shape[2].intValue, mw = protos.shape[3].intValue
            let pr = floats(protos)
            let threshold = log((metadata.postprocessing.mask_threshold ?? 0.5) / (1 - (metadata.postprocessing.mask_threshold ?? 0.5)))
            for (k, i) in keep.enumerated() {
                let anchor = candidates[i].anchor
                let coef = (0..<nm).map { d[(4 + nc + $0) * anchors + anchor] }
                // Nearest prototype cell per image pixel (the other wrappers interpolate bilinearly).
                var mask = [UInt8](repeating: 0, count: t.width * t.height)
                let box = predictions[k].bbox
                for y in 0..<t.height where Float(y) >= box[1] && Float(y) < box[3] {
                    let py = min(mh - 1, max(0, Int((Double(y) * t.scaleY + t.padTop) * Double(mh) / Double(inputHeight))))
                    for x in 0..<t.width where Float(x) >= box[0] && Float(x) < box[2] {
                        let px = min(mw - 1, max(0, Int((Double(x) * t.scaleX + t.padLeft) * Double(mw) / Double(inputWidth))))
                        var v: Float = 0
                        for m in 0..<nm { v += coef[m] * pr[m * mh * mw + py * mw + px] }
                        if v > threshold { mask[y * t.width + x] = 1 }
                    }
                }
                predictions[k].mask = mask
            }
        }
        return predictions
    }
}
