// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Fleet",
    products: [
        .library(name: "Fleet", targets: ["Fleet"]),
        .executable(name: "fleet", targets: ["FleetCLI"]),
    ],
    traits: [
        // The MPI backend and SPMD communicator (Docs/MPI.md): needs Open MPI
        // (Debian: libopenmpi-dev openmpi-bin). Off by default, so the
        // package builds and tests without it: `swift build --traits MPI`.
        .trait(name: "MPI")
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
        // Open MPI through pkg-config, with accessors for its handles (macros
        // Swift cannot import). Built only with the MPI trait.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .target(
            name: "Fleet",
            dependencies: [
                "CFleetShims",
                .target(name: "CMPI", condition: .when(traits: ["MPI"])),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            exclude: ["Backends/Process/PROTOCOL.md"]
        ),
        // libpng and libspng from the system, for `fleet demo`'s mask
        // images: libspng decodes 8-bit gray masks faster, libpng reads the
        // other grayscale forms and writes. The C target keeps libpng's
        // longjmp error handling away from Swift.
        .systemLibrary(name: "CLibPNG", pkgConfig: "libpng16", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CLibSPNG", pkgConfig: "spng", providers: [.apt(["libspng-dev"])]),
        .target(name: "CFleetPNG", dependencies: ["CLibPNG", "CLibSPNG"]),
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
        .executableTarget(name: "GaussianMixture", dependencies: ["Fleet"], path: "Examples/GaussianMixture"),
        // Remote tasks the tests run, and the worker program that serves
        // them (the test runner's own main cannot call bootstrap).
        .target(name: "FleetTestTasks", dependencies: ["Fleet"], path: "Tests/FleetTestTasks"),
        .executableTarget(
            name: "FleetTestWorker", dependencies: ["Fleet", "FleetTestTasks"], path: "Tests/FleetTestWorker"),
        // The MPI checks the tests run under mpirun (they say so and exit
        // without the MPI trait).
        .executableTarget(
            name: "FleetMPIChecks", dependencies: ["Fleet", "FleetTestTasks"], path: "Tests/FleetMPIChecks"),
        .testTarget(
            name: "FleetTests",
            dependencies: [
                "Fleet", "FleetTestTasks", "FleetTestWorker", "FleetMPIChecks", "FleetCLI", "FeatureExtraction",
                "FetchURLs", "GaussianMixture", "CFleetPNG",
            ]),
    ],
    swiftLanguageModes: [.v6]
)
