import CFleetShims
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How many cores this process may use: the smaller of the scheduler
/// affinity mask and the cgroup CPU quota (v2 `cpu.max`, or v1
/// `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up, and at least 1.
///
/// This is the default worker count of every pool. Python's `os.cpu_count()`
/// ignores both limits and oversubscribes containers; this does not.
public enum UsableCores {
    /// The usable core count, computed once per process.
    public static let count: Int = compute()

    static func compute() -> Int {
        var n = affinityCount() ?? ProcessInfo.processInfo.activeProcessorCount
        if let quota = cgroupQuota() { n = min(n, quota) }
        return max(1, n)
    }

    /// The number of CPUs in this process's scheduler affinity mask.
    static func affinityCount() -> Int? {
        let count = Int(cfleet_affinity_count())
        return count > 0 ? count : nil
    }

    /// The CPU quota of this process's cgroup, in whole cores rounded up, or
    /// nil when there is none.
    static func cgroupQuota() -> Int? {
        guard let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else {
            return nil
        }
        for path in cgroupDirectories(membership) {
            if let text = try? String(contentsOfFile: "/sys/fs/cgroup\(path)/cpu.max", encoding: .utf8),
                let cores = parseCPUMax(text)
            {
                return cores
            }
            let v1 = "/sys/fs/cgroup/cpu,cpuacct\(path)"
            if let q = try? String(contentsOfFile: v1 + "/cpu.cfs_quota_us", encoding: .utf8),
                let p = try? String(contentsOfFile: v1 + "/cpu.cfs_period_us", encoding: .utf8),
                let cores = parseCFS(quota: q, period: p)
            {
                return cores
            }
        }
        if let text = try? String(contentsOfFile: "/sys/fs/cgroup/cpu.max", encoding: .utf8) {
            return parseCPUMax(text)
        }
        return nil
    }

    /// The cgroup directories named in `/proc/self/cgroup`, innermost first,
    /// each followed by its ancestors (a quota on a parent also applies).
    static func cgroupDirectories(_ membership: String) -> [String] {
        var dirs: [String] = []
        for line in membership.split(separator: "\n") {
            // "hierarchy-ID:controller-list:cgroup-path"
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let controllers = parts[1]
            guard controllers.isEmpty || controllers.split(separator: ",").contains("cpu") else { continue }
            var path = String(parts[2])
            while true {
                if !dirs.contains(path) { dirs.append(path == "/" ? "" : path) }
                guard let slash = path.lastIndex(of: "/"), path != "/" else { break }
                path = slash == path.startIndex ? "/" : String(path[..<slash])
            }
        }
        return dirs
    }

    /// Parses cgroup v2 `cpu.max` ("max 100000" or "150000 100000").
    static func parseCPUMax(_ text: String) -> Int? {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 2, fields[0] != "max",
            let quota = Double(fields[0]), let period = Double(fields[1]), quota > 0, period > 0
        else { return nil }
        return max(1, Int((quota / period).rounded(.up)))
    }

    /// Parses cgroup v1 quota and period files (a quota of -1 means none).
    static func parseCFS(quota: String, period: String) -> Int? {
        guard let q = Double(quota.trimmingCharacters(in: .whitespacesAndNewlines)),
            let p = Double(period.trimmingCharacters(in: .whitespacesAndNewlines)), q > 0, p > 0
        else { return nil }
        return max(1, Int((q / p).rounded(.up)))
    }
}
