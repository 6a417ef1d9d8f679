// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Fleet",
    products: [
        .library(name: "Fleet", targets: ["Fleet"]),
        .executable(name: "fleet", targets: ["FleetCLI"]),
    ],
    dependencies: [
        // Deque (the worker queues) and Heap (the deadline watchdog).
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        // The `fleet` command line.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Linux calls that need _GNU_SOURCE (affinity mask, thread names).
        .target(name: "CFleetShims"),
        .target(
            name: "Fleet",
            dependencies: [
                "CFleetShims",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            exclude: ["Backends/Process/PROTOCOL.md"]
        ),
        // libpng from the system, for `fleet demo`'s mask images; the C
        // target keeps libpng's longjmp error handling away from Swift.
        .systemLibrary(name: "CLibPNG", pkgConfig: "libpng16", providers: [.apt(["libpng-dev"])]),
        .target(name: "CFleetPNG", dependencies: ["CLibPNG"]),
        .executableTarget(
            name: "FleetCLI",
            dependencies: [
                "Fleet",
                "CFleetPNG",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Examples (Examples/README.md), built and run by the test suite.
        .executableTarget(name: "FeatureExtraction", dependencies: ["Fleet"], path: "Examples/FeatureExtraction"),
        .executableTarget(name: "FetchURLs", dependencies: ["Fleet"], path: "Examples/FetchURLs"),
        // Remote tasks the tests run, and the worker program that serves
        // them (the test runner's own main cannot call bootstrap).
        .target(name: "FleetTestTasks", dependencies: ["Fleet"], path: "Tests/FleetTestTasks"),
        .executableTarget(name: "FleetTestWorker", dependencies: ["Fleet", "FleetTestTasks"], path: "Tests/FleetTestWorker"),
        .testTarget(name: "FleetTests", dependencies: ["Fleet", "FleetTestTasks", "FleetTestWorker", "FleetCLI", "FeatureExtraction", "FetchURLs"]),
    ],
    swiftLanguageModes: [.v6]
)
