/// Which backend and worker count won each workload, and by how much: the
/// advice `fleet bench` ends with.
struct Advice {
    let workload: String
    let winner: BenchSummary
    /// Every other Fleet configuration that ran it, with how many times
    /// better the winner did.
    let others: [(BenchSummary, Double)]

    /// One sentence, e.g. "tiny: threads with 2 workers wins (233M tasks/s):
    /// 1.78x better than serial, 4.79x better than processes with 2."
    var sentence: String {
        let lead = "\(workload): \(name(winner)) wins (\(formatFigure(winner.figure)) \(winner.unit))"
        guard !others.isEmpty else { return lead + ", the only backend that ran it." }
        let rest = others.map { String(format: "%.2fx better than %@", $0.1, name($0.0)) }
        return lead + ": " + rest.joined(separator: ", ") + "."
    }

    private func name(_ s: BenchSummary) -> String {
        s.backend == "serial" ? "serial" : "\(s.backend) with \(s.workers) worker\(s.workers == 1 ? "" : "s")"
    }
}

/// Whether a bigger figure is better in `unit`: rates (anything per second)
/// and speedups; times per thing and memory are better smaller.
func biggerIsBetter(_ unit: String) -> Bool { unit.hasSuffix("/s") || unit == "x serial" }

/// The winner of each workload among Fleet's backends (the baseline, which
/// is not Fleet, and runs with a failed check do not compete).
func advise(_ rows: [BenchSummary]) -> [Advice] {
    var order: [String] = []
    for r in rows where !order.contains(r.workload) { order.append(r.workload) }
    return order.compactMap { workload in
        let candidates = rows.filter {
            $0.workload == workload && !["baseline", "mpi-c"].contains($0.backend) && $0.check == "ok"
                && $0.figure.isFinite
        }
        guard let first = candidates.first else { return nil }
        let bigger = biggerIsBetter(first.unit)
        let winner = candidates.max { bigger ? $0.figure < $1.figure : $0.figure > $1.figure }!
        let others = candidates.filter { $0.backend != winner.backend || $0.workers != winner.workers }.map { other in
            (other, bigger ? winner.figure / other.figure : other.figure / winner.figure)
        }
        return Advice(workload: workload, winner: winner, others: others.sorted { $0.1 < $1.1 })
    }
}

/// The advice as a table.
func renderAdvice(_ advice: [Advice], markdown: Bool) -> String {
    let header = ["workload", "use", "workers", "figure", "unit", "next best", "margin"]
    let rows = advice.map { a in
        [
            a.workload, a.winner.backend, "\(a.winner.workers)", formatFigure(a.winner.figure), a.winner.unit,
            a.others.first.map { "\($0.0.backend) (\($0.0.workers))" } ?? "-",
            a.others.first.map { String(format: "%.2fx", $0.1) } ?? "-",
        ]
    }
    return renderGrid(header, rows, rightAligned: 2...3, markdown: markdown)
}
