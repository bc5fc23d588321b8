// swift-tools-version:5.7
// The exported CoreML model's wrapper (library) and a command-line example (macOS).
// Not built where the package was made: it needs Xcode / the Swift toolchain on macOS.
import PackageDescription

let package = Package(
    name: "ModelWrapper",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [.library(name: "ModelWrapper", targets: ["ModelWrapper"])],
    targets: [
        .target(name: "ModelWrapper"),
        .executableTarget(name: "Example", dependencies: ["ModelWrapper"]),
    ]
)
