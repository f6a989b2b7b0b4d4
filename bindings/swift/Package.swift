// swift-tools-version:5.9
// The Swift package of Countersign's device library. The XCFramework and the
// generated Sources/Countersign/Countersign.swift are made by
// scripts/build-ios.sh (they are not committed).
import PackageDescription

let package = Package(
    name: "Countersign",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "Countersign", targets: ["Countersign"]),
    ],
    targets: [
        .binaryTarget(name: "CountersignFFI", path: "CountersignFFI.xcframework"),
        .target(
            name: "Countersign",
            dependencies: ["CountersignFFI"],
            path: "Sources/Countersign"
        ),
    ]
)
