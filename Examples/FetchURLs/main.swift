// I/O-bound calls: fetch many URLs from a local HTTP server that answers
// each request after a fixed delay, serially, on threads and on processes,
// and print the times. Threads win: the work is waiting, and a blocked
// thread costs nothing, while processes are few and costly.
//
//   FetchURLs [--urls N] [--delay MS] [--threads N] [--processes N]
import Fleet
import Foundation

enum FetchTasks {
    /// GETs `url` (http://127.0.0.1:PORT/PATH) and returns the body's length.
    static let fetch = RemoteTask("example.fetch") { (url: String) throws -> Int in try httpGet(url).count }
}

/// A blocking HTTP/1.0 GET over a plain socket: enough for a loopback server.
func httpGet(_ url: String) throws -> [UInt8] {
    guard let u = URL(string: url), let host = u.host, let port = u.port else { throw FetchError("bad URL \(url)") }
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FetchError("socket: \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &addr.sin_addr)
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard rc == 0 else { throw FetchError("connect to \(url): \(errno)") }
    let request = Array("GET \(u.path.isEmpty ? "/" : u.path) HTTP/1.0\r\nHost: \(host)\r\n\r\n".utf8)
    guard write(fd, request, request.count) == request.count else { throw FetchError("write: \(errno)") }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4_096)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n <= 0 { break }
        response.append(contentsOf: chunk[0..<n])
    }
    guard let split = response.firstRange(of: Array("\r\n\r\n".utf8)) else {
        throw FetchError("no HTTP header from \(url)")
    }
    return Array(response[split.upperBound...])
}

/// A loopback HTTP server: every request is answered after `delay`, each
/// on its own thread.
func startServer(delay: Duration) throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
        }
    }
    guard bound, listen(fd, 512) == 0 else { throw FetchError("cannot listen on 127.0.0.1") }
    let micros = UInt32(delay.components.seconds * 1_000_000 + delay.components.attoseconds / 1_000_000_000_000)
    Thread.detachNewThread {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 { continue }
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 4_096)
                _ = read(client, &buffer, buffer.count)
                usleep(micros)
                let body = Array(repeating: UInt8(ascii: "x"), count: 1_000)
                let reply = Array("HTTP/1.0 200 OK\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
                _ = write(client, reply, reply.count)
                close(client)
            }
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

struct FetchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - main

try RemoteTasks.bootstrap(FetchTasks.fetch)  // first: worker processes serve here
signal(SIGPIPE, SIG_IGN)

var options: [String: String] = [:]
var args = CommandLine.arguments.dropFirst()
while let key = args.popFirst() { options[key] = args.popFirst() }
let count = Int(options["--urls"] ?? "") ?? 200
let delay = Duration.milliseconds(Int(options["--delay"] ?? "") ?? 50)
let threadCount = Int(options["--threads"] ?? "") ?? 32
let processCount = Int(options["--processes"] ?? "") ?? UsableCores.count

let port = try startServer(delay: delay)
let urls = (0..<count).map { "http://127.0.0.1:\(port)/page/\($0)" }
print("\(count) URLs, each answered after \(delay), from a server on 127.0.0.1:\(port)")
var times: [(String, Duration)] = []
for (name, pool) in [
    ("serial", Pool.serial), ("threads (\(threadCount))", try Pool.threads(workers: threadCount)),
    ("processes (\(processCount))", try Pool.processes(workers: processCount)),
] {
    try await pool.waitUntilReady()
    let start = ContinuousClock.now
    let sizes = try await pool.map(urls, FetchTasks.fetch, options: MapOptions(batchSize: 1))
    let elapsed = ContinuousClock.now - start
    guard sizes.allSatisfy({ $0 == 1_000 }) else { throw FetchError("\(name): a page came back wrong") }
    print("\(name): \(elapsed)")
    times.append((name, elapsed))
    if pool !== Pool.serial { await pool.shutdown() }
}
let best = times.min { $0.1 < $1.1 }!
print("fastest: \(best.0)")
