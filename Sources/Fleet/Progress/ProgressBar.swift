#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A progress bar on standard error, fed by `MapOptions.progress`.
///
/// On a terminal it redraws one line in place; otherwise (a log file, CI) it
/// prints a plain line at most every `plainInterval`, and always the last.
///
/// ```swift
/// let bar = ProgressBar(label: "masks")
/// let counts = try await pool.map(files, options: .init(progress: bar.report)) { try count($0) }
/// ```
public final class ProgressBar: Sendable {
    private let label: String
    private let isTTY: Bool
    private let width: Int
    private let plainInterval: Duration
    private let lastPlain = Locked<Duration?>(nil)

    /// A bar titled `label`. `isTTY` defaults to whether stderr is a terminal.
    public init(label: String, isTTY: Bool? = nil, width: Int = 30, plainInterval: Duration = .seconds(5)) {
        self.label = label
        self.isTTY = isTTY ?? (isatty(STDERR_FILENO) == 1)
        self.width = max(5, width)
        self.plainInterval = plainInterval
    }

    /// Draws a snapshot; pass this as `MapOptions.progress`.
    public var report: @Sendable (ProgressSnapshot) -> Void {
        { [self] snap in draw(snap) }
    }

    /// The text for one snapshot, without line control characters.
    public func render(_ s: ProgressSnapshot) -> String {
        let done = s.completed + s.failed
        var text = label + " "
        if let total = s.total, total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            let filled = Int((fraction * Double(width)).rounded(.down))
            text += "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
            text += "\(done)/\(total) \(Int((fraction * 100).rounded(.down)))%"
        } else {
            text += "\(done) done, \(s.submitted - done) in flight"
        }
        if s.failed > 0 { text += ", \(s.failed) failed" }
        text += ", " + formatRate(s.rate) + "/s"
        return text
    }

    private func draw(_ s: ProgressSnapshot) {
        if isTTY {
            let line = "\r\u{1B}[2K" + render(s) + (s.isFinished ? "\n" : "")
            writeStderr(line)
            return
        }
        let due = lastPlain.withLock { last -> Bool in
            if s.isFinished || last == nil || s.elapsed - last! >= plainInterval {
                last = s.elapsed
                return true
            }
            return false
        }
        if due { writeStderr(render(s) + "\n") }
    }
}

func formatRate(_ rate: Double) -> String {
    switch rate {
    case 1e6...: return String(format1: rate / 1e6) + "M"
    case 1e3...: return String(format1: rate / 1e3) + "k"
    default: return String(format1: rate)
    }
}

extension String {
    /// One decimal place, without Foundation.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}

func writeStderr(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { return }
        offset += n
    }
}
