import ArgumentParser

struct FleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Parallel execution for Swift: benchmarks and the demo job.",
        subcommands: [BenchCommand.self, DemoCommand.self, BenchRunCommand.self],
        defaultSubcommand: BenchCommand.self
    )
}
