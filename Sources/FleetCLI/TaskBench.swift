import ArgumentParser
import Fleet
import Foundation

/// `fleet bench --task NAME --input FILE`: runs one of the program's own
/// registered tasks over sample inputs on each backend, and says which to
/// use. The advice every article on the subject ends with, "test your
/// options", done for the user.
func benchTask(
    _ name: String, input: String, backends: [BenchBackend], workers: [Int], runs: Int,
    markdown: Bool
) async throws {
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: input)) } catch {
        throw ValidationError("cannot read --input \(input): \(error.localizedDescription)")
    }
    let kinds = (backends.isEmpty ? [.serial, .threads, .processes] : backends).compactMap(\.fleetKind)
    var rows: [BenchSummary] = []
    for kind in kinds {
        for n in kind == .serial ? [1] : (workers.isEmpty ? [UsableCores.count] : workers) {
            let pool = try Pool.make(kind, workers: n)
            try await pool.waitUntilReady()
            var records: [BenchRecord] = []
            do {
                _ = try await RemoteTasks.map(taskNamed: name, jsonInputs: data, on: pool)  // untimed warm-up
                for _ in 0..<runs {
                    let started = ContinuousClock.now
                    let items = try await RemoteTasks.map(taskNamed: name, jsonInputs: data, on: pool)
                    let seconds = (ContinuousClock.now - started).seconds
                    records.append(
                        BenchRecord(
                            workload: name, backend: kind.rawValue, workers: n, tasks: items,
                            seconds: seconds, figure: Double(items) / seconds, unit: "tasks/s",
                            check: "ok", peak_rss_bytes: 0))
                }
            } catch let error as FleetError {
                await pool.shutdown()
                throw ValidationError("\(error)")
            }
            await pool.shutdown()
            rows.append(BenchSummary(records))
        }
    }
    print(
        renderGrid(
            ["task", "backend", "workers", "median s", "tasks/s"],
            rows.map {
                [$0.workload, $0.backend, "\($0.workers)", String(format: "%.4f", $0.seconds), formatFigure($0.figure)]
            },
            rightAligned: 2...4, markdown: markdown))
    if let advice = advise(rows).first {
        print()
        print(advice.sentence)
        print("Use Pool.make(.\(advice.winner.backend), workers: \(advice.winner.workers)) for it.")
    }
}
