import ArgumentParser
import Fleet

// First thing: in a worker process of the processes backend this serves
// the benchmark tasks and never returns.
try RemoteTasks.bootstrap(BenchTasks.all + DemoTasks.all)

// Then the command line. Each command is called by its own type: through
// the protocol, Swift picks ParsableCommand's synchronous `run()`, which
// only prints help.
do {
    var command = try FleetCommand.parseAsRoot()
    switch command {
    case let bench as BenchCommand: try await bench.run()
    case let one as BenchRunCommand: try await one.run()
    case let demo as DemoCommand: try await demo.run()
    default: try command.run()
    }
} catch {
    FleetCommand.exit(withError: error)
}
