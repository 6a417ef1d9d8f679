import ArgumentParser
import Fleet
import Foundation

/// `fleet bench`: runs the standard workloads on each backend, each run in
/// a fresh child process so its peak memory is its own.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run the standard workloads (shared/bench/WORKLOADS.md) on each backend."
    )

    @Option(
        name: .long, parsing: .upToNextOption,
        help: "Workloads to run (\(Workload.allCases.map(\.rawValue).joined(separator: ", "))). Default: all.")
    var workload: [Workload] = []

    @Option(
        name: .long, parsing: .upToNextOption,
        help:
            "Backends (\(BenchBackend.allCases.map(\.rawValue).joined(separator: ", "))). Default: those that need no MPI job (\(BenchBackend.standard.map(\.rawValue).joined(separator: ", ")))."
    )
    var backend: [BenchBackend] = []

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The command that starts the mpi and mpi-c runs, before its -np.",
            discussion:
                "Default: mpirun, with --oversubscribe when the ranks outnumber the cores and --allow-run-as-root as root. An mpi run with N workers has N + 1 ranks (rank 0 drives)."
        ))
    var mpirun: String?

    @Option(
        name: .long, parsing: .upToNextOption,
        help: "Worker counts. Default: the usable cores (100 for io, 2 for startup).")
    var workers: [Int] = []

    @Option(name: .long, help: "Runs of each workload on each backend.")
    var runs: Int = 3

    @Option(name: .long, help: "K for the cpu workload. Default: calibrated so serial takes about 1.5 s.")
    var cpuK: Int?

    @Flag(name: .long, help: "Print one JSON line per run instead of the table.")
    var json = false

    @Flag(name: .long, help: "Print the tables in Markdown.")
    var markdown = false

    @Option(name: .long, help: "Measure this registered remote task instead of the standard workloads.")
    var task: String?

    @Option(name: .long, help: "With --task: a file holding a JSON array of the task's inputs.")
    var input: String?

    func validate() throws {
        if runs <= 0 { throw ValidationError("--runs must be positive, got \(runs)") }
        if let bad = workers.first(where: { $0 <= 0 }) {
            throw ValidationError("--workers must be positive, got \(bad)")
        }
        if let k = cpuK, k <= 0 { throw ValidationError("--cpu-k must be positive, got \(k)") }
        if (task == nil) != (input == nil) { throw ValidationError("--task and --input go together") }
        if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil {
            throw ValidationError(
                "run fleet bench itself, not under mpirun: it starts each mpi run under mpirun (-np workers + 1; --mpirun to change how)"
            )
        }
        #if !MPI
        if backend.contains(.mpi) {
            throw ValidationError(
                "this fleet was built without the MPI trait, so it has no mpi backend: swift build -c release --traits MPI (scripts/bench does)"
            )
        }
        #endif
    }

    func run() async throws {
        if let task, let input {
            return try await benchTask(
                task, input: input, backends: backend, workers: workers, runs: runs,
                markdown: markdown)
        }
        let backends = backend.isEmpty ? BenchBackend.standard : backend
        let workloads = workload.isEmpty ? Workload.allCases.filter { w in backends.contains { $0.runs(w) } } : workload
        for w in workloads where !backends.contains(where: { $0.runs(w) }) {
            throw ValidationError(
                "no backend named runs \(w.rawValue): it runs on \(BenchBackend.allCases.filter { $0.runs(w) }.map(\.rawValue).joined(separator: ", "))"
            )
        }
        let k = workloads.contains(.cpu) ? (cpuK ?? calibrateCPU()) : 0
        var summaries: [BenchSummary] = []
        let bar = ProgressBar(label: "bench runs")
        let started = ContinuousClock.now
        var finishedRuns = 0
        let plannedRuns = workloads.reduce(0) { total, w in
            total + runs * backends.filter { $0.runs(w) }.map { $0 == .serial ? 1 : max(1, workers.count) }.reduce(0, +)
        }
        for w in workloads {
            var plan: [(BenchBackend, Int)] = []
            var named = backends
            if w == .allreduce && named.contains(.mpi) && !named.contains(.mpiC) {
                named.append(.mpiC)  // the limit, in the same run
            }
            for b in named {
                if !b.runs(w) { continue }
                let counts = b == .serial ? [1] : (workers.isEmpty ? [w.fixedWorkers ?? UsableCores.count] : workers)
                for n in counts { plan.append((b, n)) }
            }
            if w == .cpu && !plan.contains(where: { $0.0 == .serial }) {
                plan.insert((.serial, 1), at: 0)  // the speedup's reference
            }
            var groups: [[BenchRecord]] = []
            for (b, n) in plan {
                var records: [BenchRecord] = []
                for _ in 0..<runs {
                    records.append(try runChild(workload: w, backend: b, workers: n, cpuK: k))
                    finishedRuns += 1
                    bar.report(
                        ProgressSnapshot(
                            submitted: finishedRuns, completed: finishedRuns, failed: 0,
                            total: max(plannedRuns, finishedRuns),
                            elapsed: ContinuousClock.now - started, isFinished: false))
                }
                groups.append(records)
            }
            fillFigures(w, &groups)
            for records in groups {
                if json { for r in records { print(r.jsonLine) } }
                summaries.append(BenchSummary(records))
            }
            fflush(nil)
        }
        bar.report(
            ProgressSnapshot(
                submitted: finishedRuns, completed: finishedRuns, failed: 0,
                total: finishedRuns, elapsed: ContinuousClock.now - started, isFinished: true))
        if !json {
            print(renderTable(summaries, markdown: markdown))
            print()
            for line in comparisons(summaries) { print(line) }
            for n in Set(summaries.filter { $0.backend.hasPrefix("mpi") }.map(\.workers)).sorted()
            where n + 1 > UsableCores.count && mpirun == nil {
                print("mpi with \(n) workers: \(n + 1) ranks on \(UsableCores.count) usable cores, oversubscribed.")
            }
            let advice = advise(summaries)
            if !advice.isEmpty {
                print("\nWhat to use:")
                print(renderAdvice(advice, markdown: markdown))
                print()
                for a in advice { print(a.sentence) }
            }
        }
    }

    /// Figures that depend on other runs: cpu's speedup over the serial
    /// median, bigresult's peak memory.
    private func fillFigures(_ w: Workload, _ groups: inout [[BenchRecord]]) {
        switch w {
        case .cpu:
            let serial = groups.first { $0.first?.backend == "serial" }.map { median($0.map(\.seconds)) } ?? .nan
            for g in groups.indices {
                for r in groups[g].indices { groups[g][r].figure = serial / groups[g][r].seconds }
            }
        case .bigresult:
            for g in groups.indices {
                for r in groups[g].indices { groups[g][r].figure = Double(groups[g][r].peak_rss_bytes) / 1_048_576 }
            }
        default: break
        }
    }

    /// Sentences comparing Fleet with the baseline in the same run.
    private func comparisons(_ rows: [BenchSummary]) -> [String] {
        var out: [String] = []
        for c in rows where c.backend == "mpi-c" {
            for r in rows where r.workload == c.workload && r.backend == "mpi" && r.workers == c.workers {
                out.append(
                    String(
                        format: "%@: Fleet takes %.2fx the C program's time per call (%@ vs %@ %@, %d ranks).",
                        r.workload, r.figure / c.figure, formatFigure(r.figure), formatFigure(c.figure), r.unit,
                        r.workers + 1))
            }
        }
        for base in rows where base.backend == "baseline" {
            for r in rows where r.workload == base.workload && r.backend == "threads" && r.workers == base.workers {
                let ratio = base.workload == "tiny" ? r.figure / base.figure : base.seconds / r.seconds
                out.append(
                    String(
                        format: "%@: threads reach %.0f%% of the baseline (%@ vs %@ %@).",
                        r.workload, ratio * 100, formatFigure(r.figure), formatFigure(base.figure), r.unit))
            }
        }
        return out
    }

    private func runChild(workload: Workload, backend: BenchBackend, workers: Int, cpuK: Int) throws -> BenchRecord {
        let process = Process()
        let fleet = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let arguments = [
            "run-one", "--workload", workload.rawValue, "--backend", backend.rawValue,
            "--workers", "\(workers)", "--cpu-k", "\(cpuK)",
        ]
        if backend.isMPI {
            let program =
                backend == .mpi ? [fleet.path] + arguments : [try allreduceProgram(beside: fleet), "\(workers)"]
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = mpirunCommand(ranks: workers + 1) + program
            process.environment = mpiEnvironment()
        } else {
            process.executableURL = fleet
            process.arguments = arguments
        }
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let line = String(data: data, encoding: .utf8)?.split(separator: "\n").last,
            let record = try? JSONDecoder().decode(BenchRecord.self, from: Data(line.utf8))
        else {
            throw ValidationError("the \(workload) run on \(backend) failed (exit status \(process.terminationStatus))")
        }
        return record
    }

    /// `mpirun` and its options, up to the program.
    private func mpirunCommand(ranks: Int) -> [String] {
        if let mpirun { return mpirun.split(separator: " ").map(String.init) + ["-np", "\(ranks)"] }
        var command = ["mpirun"]
        if getuid() == 0 { command.append("--allow-run-as-root") }
        if ranks > UsableCores.count { command.append("--oversubscribe") }
        return command + ["-np", "\(ranks)"]
    }
}

/// `fleet run-one`: one run of one workload, printed as a JSON line. Used by
/// `fleet bench`, which starts it as a child process.
struct BenchRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-one", abstract: "Run one workload once (used by fleet bench).", shouldDisplay: false)

    @Option var workload: Workload
    @Option var backend: BenchBackend
    @Option var workers: Int
    @Option var cpuK: Int

    func run() async throws {
        // Large results move between threads here; keep freed ones from
        // piling up in per-thread allocator caches (see MallocTuning). Not
        // under MPI: Open MPI allocates its large scratch buffers for each
        // collective, and would pay fresh pages for them on every call.
        if !backend.isMPI { MallocTuning.returnLargeBlocksToSystem() }
        let m = try await runWorkload(workload, backend: backend, workers: workers, cpuK: cpuK)
        // (Under MPI only rank 0 gets here: the others serve, then exit.)
        let record = BenchRecord(
            workload: workload.rawValue, backend: backend.rawValue,
            workers: backend == .serial ? 1 : workers, tasks: m.tasks, seconds: m.seconds,
            figure: m.figure, unit: m.unit, check: m.check,
            peak_rss_bytes: peakRSSBytes() + m.workerPeakBytes)
        print(record.jsonLine)
    }
}
