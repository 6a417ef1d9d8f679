import Foundation

/// One run's JSON record, with exactly the keys of WORKLOADS.md.
struct BenchRecord: Codable {
    var workload: String
    var backend: String
    var workers: Int
    var tasks: Int
    var seconds: Double
    var figure: Double
    var unit: String
    var check: String
    var peak_rss_bytes: Int

    /// The record as one line of JSON, keys in the contract's order.
    var jsonLine: String {
        func str(_ s: String) -> String {
            String(data: try! JSONEncoder().encode(s), encoding: .utf8)!
        }
        func num(_ d: Double) -> String { d.isFinite ? String(format: "%.6g", d) : "null" }
        return "{\"workload\":\(str(workload)),\"backend\":\(str(backend)),\"workers\":\(workers),"
            + "\"tasks\":\(tasks),\"seconds\":\(num(seconds)),\"figure\":\(num(figure)),"
            + "\"unit\":\(str(unit)),\"check\":\(str(check)),\"peak_rss_bytes\":\(peak_rss_bytes)}"
    }
}

/// The medians of several runs of one workload on one backend.
struct BenchSummary {
    var workload: String
    var backend: String
    var workers: Int
    var runs: Int
    var seconds: Double
    var figure: Double
    var unit: String
    var peakRSS: Double
    var check: String

    init(_ records: [BenchRecord]) {
        let first = records[0]
        workload = first.workload
        backend = first.backend
        workers = first.workers
        runs = records.count
        seconds = median(records.map(\.seconds))
        figure = median(records.map(\.figure))
        unit = first.unit
        peakRSS = median(records.map { Double($0.peak_rss_bytes) })
        let bad = records.filter { $0.check != "ok" }
        check = bad.isEmpty ? "ok" : bad[0].check
    }
}

/// Formats summaries as a table: aligned text, or Markdown.
func renderTable(_ rows: [BenchSummary], markdown: Bool = false) -> String {
    let header = ["workload", "backend", "workers", "runs", "median s", "figure", "unit", "peak RSS", "check"]
    let cells = rows.map { r in
        [
            r.workload, r.backend, "\(r.workers)", "\(r.runs)", String(format: "%.4f", r.seconds),
            formatFigure(r.figure), r.unit, String(format: "%.1f MiB", r.peakRSS / 1_048_576), r.check,
        ]
    }
    return renderGrid(header, cells, rightAligned: 2...5, markdown: markdown)
}

/// Lays out a table as aligned text or as Markdown.
func renderGrid(_ header: [String], _ rows: [[String]], rightAligned: ClosedRange<Int>, markdown: Bool) -> String {
    if markdown {
        let align = header.indices.map { rightAligned.contains($0) ? "---:" : "---" }
        return ([header, align] + rows).map { "| " + $0.joined(separator: " | ") + " |" }.joined(separator: "\n")
    }
    let lines = [header] + rows
    var widths = [Int](repeating: 0, count: header.count)
    for line in lines { for (i, cell) in line.enumerated() { widths[i] = max(widths[i], cell.count) } }
    return lines.map { line in
        line.enumerated().map { i, cell in
            let pad = String(repeating: " ", count: widths[i] - cell.count)
            return rightAligned.contains(i) ? pad + cell : cell + pad
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

func formatFigure(_ x: Double) -> String {
    if x >= 1e6 { return String(format: "%.3gM", x / 1e6) }
    if x >= 1e4 { return String(format: "%.1fk", x / 1e3) }
    return String(format: "%.3f", x)
}
