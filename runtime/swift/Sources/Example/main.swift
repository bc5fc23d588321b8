// Runs the exported CoreML model on images and prints the predictions:
//   swift run Example ../../model.mlpackage ../../metadata.json ../../samples/01-image.png
import CoreGraphics
import Foundation
import ImageIO
import ModelWrapper

let args = CommandLine.arguments
guard args.count >= 4 else {
    FileHandle.standardError.write("usage: Example model.mlpackage metadata.json image [image ...]\n".data(using: .utf8)!)
    exit(2)
}
do {
    let model = try ModelWrapper(modelURL: URL(fileURLWithPath: args[1]), metadataURL: URL(fileURLWithPath: args[2]))
    for path in args.dropFirst(3) {
        guard let source = CGImageSourceCreateWithURL(URL(fileURLWithPath: path) as CFURL, nil),
              let image = CGImageSourceCreateImageAtIndex(source, 0, nil) else {
            FileHandle.standardError.write("cannot read \(path)\n".data(using: .utf8)!)
            continue
        }
        let predictions = try model.predict(image)
        for p in predictions {
            let box = p.bbox.map { String(format: "%.1f", $0) }.joined(separator: ", ")
            print("\(path): \(p.className) \(String(format: "%.3f", p.confidence)) [\(box)]")
        }
    }
} catch {
    FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
    exit(1)
}
