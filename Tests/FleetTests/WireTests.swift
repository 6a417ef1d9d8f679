import Foundation
import Testing

@testable import Fleet

/// Values of many shapes, to check the wire form round-trips them.
private struct Record: Codable, Equatable {
    enum Kind: Codable, Equatable {
        case empty
        case named(String)
        case pair(Int, Double)
    }
    var id: Int
    var name: String
    var score: Double?
    var tags: [String]
    var counts: [String: Int]
    var kind: Kind
    var nested: [Record]
    var flags: Set<Int8>
    var blob: Data
    var bits: [UInt16]
    var ok: Bool
}

private class Base: Codable {
    var a = 1
}

private final class Derived: Base {
    var b = 2
    enum CodingKeys: String, CodingKey { case b }
    override init() { super.init() }
    required init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        b = try c.decode(Int.self, forKey: .b)
        try super.init(from: c.superDecoder())
    }
    override func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(b, forKey: .b)
        try super.encode(to: c.superEncoder())
    }
}

/// Nested through arrays (the collection path).
private struct Nest: Codable, Equatable {
    var inner: [Nest]
    init(inner: [Nest]) { self.inner = inner }
    init(from decoder: any Decoder) throws { inner = try decoder.singleValueContainer().decode([Nest].self) }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(inner)
    }
}

/// Nested through unkeyed containers opened by hand.
private struct HandNest: Decodable {
    var inner: [HandNest] = []
    init(from decoder: any Decoder) throws {
        var c = try decoder.unkeyedContainer()
        while !c.isAtEnd { inner.append(try c.decode(HandNest.self)) }
    }
}

private func sample(_ seed: Int, depth: Int = 2) -> Record {
    Record(
        id: seed, name: "record \(seed) ✓", score: seed % 3 == 0 ? nil : Double(seed) / 7,
        tags: (0..<(seed % 4)).map { "t\($0)" }, counts: ["a": seed, "b": -seed],
        kind: [.empty, .named("n\(seed)"), .pair(seed, 0.5)][seed % 3],
        nested: depth == 0 ? [] : (0..<2).map { sample(seed * 3 + $0, depth: depth - 1) },
        flags: [Int8(seed % 100), -1], blob: Data((0..<(seed % 50)).map { UInt8($0) }),
        bits: (0..<(seed % 9)).map { UInt16($0 * 1000) }, ok: seed % 2 == 0)
}

@Suite struct WireTests {
    @Test func valuesRoundTrip() throws {
        for seed in 0..<50 {
            let value = sample(seed)
            #expect(try WireCoding.decode(Record.self, from: WireCoding.encode(value)) == value)
        }
        let numbers: [Double] = [0, -1.5, .infinity, .greatestFiniteMagnitude]
        #expect(try WireCoding.decode([Double].self, from: WireCoding.encode(numbers)) == numbers)
        let optionals: [Int?] = [1, nil, 3]
        #expect(try WireCoding.decode([Int?].self, from: WireCoding.encode(optionals)) == optionals)
        let nestedOptional: String?? = .some(nil)
        #expect(try WireCoding.decode(String??.self, from: WireCoding.encode(nestedOptional)) == nestedOptional)
        let derived = try WireCoding.decode(Derived.self, from: WireCoding.encode(Derived()))
        #expect(derived.a == 1 && derived.b == 2)
        #expect(
            try WireCoding.decode([[UInt8]].self, from: WireCoding.encode([[1, 2], [], [3]] as [[UInt8]])) == [
                [1, 2], [], [3],
            ])
    }

    /// Dictionaries and arrays of anything but fixed-width numbers take the
    /// collection path: every key and element type, nested, empty, big.
    @Test func collectionsRoundTrip() throws {
        func roundTrip<T: Codable & Equatable>(_ value: T) throws {
            #expect(try WireCoding.decode(T.self, from: WireCoding.encode(value)) == value, "\(T.self)")
        }
        let words = Dictionary(uniqueKeysWithValues: (0..<256).map { ("w\($0)", $0 % 1009) })
        try roundTrip(words)
        try roundTrip([String: Int]())
        try roundTrip([Int: String](uniqueKeysWithValues: (0..<100).map { ($0 * 7, "é\($0)🙂") }))
        try roundTrip(["a": ["x": 1.5], "b": [:], "ünï": ["y": -0.0]])
        try roundTrip(["long key " + String(repeating: "k", count: 300): [1, 2, 3]])
        try roundTrip([Int8(3): [true, false], -1: []])
        try roundTrip(["one": sample(1), "two": sample(2)])
        try roundTrip([String: Int?](dictionaryLiteral: ("some", 1), ("none", nil)))
        try roundTrip((0..<1_000).map { "s\($0)" })
        try roundTrip([String]())
        try roundTrip((0..<20).map { sample($0, depth: 1) })
        try roundTrip([[String]](arrayLiteral: ["a"], [], ["b", "c"]))
        try roundTrip([Set<String>(["x", "y"])])
        // The form: a count, then keys and values with nothing between.
        #expect(try WireCoding.encode(["ab": UInt8(7)]) == [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 97, 98, 7])
    }

    @Test func aKeyTwiceIsCorrupt() throws {
        let once = try WireCoding.encode(["ab": UInt8(7)])
        var twice = once + once.dropFirst(8)
        twice[0] = 2
        #expect(throws: WireError.corrupt("a dictionary holds the key ab twice")) {
            try WireCoding.decode([String: UInt8].self, from: twice)
        }
    }

    /// Nesting is bounded through every kind of container, so a crafted
    /// frame cannot exhaust the stack.
    @Test func deepNestingIsAnErrorNotACrash() throws {
        let deep =
            [UInt8](repeating: 0, count: 100_000 * 8).enumerated().map { $0.offset % 8 == 0 ? 1 : $0.element }
            + [UInt8](repeating: 0, count: 8)
        #expect(throws: WireError.corrupt("values nested deeper than 512")) {
            try WireCoding.decode(Nest.self, from: deep)
        }
        #expect(throws: WireError.corrupt("values nested deeper than 512")) {
            try WireCoding.decode(HandNest.self, from: deep)
        }
        var shallow = Nest(inner: [])
        for _ in 0..<100 { shallow = Nest(inner: [shallow]) }
        #expect(try WireCoding.decode(Nest.self, from: WireCoding.encode(shallow)) == shallow)
    }

    @Test func numericArraysCostNothingPerElement() throws {
        let big = [UInt32](repeating: 7, count: 1_000_000)
        let bytes = try WireCoding.encode(big)
        #expect(bytes.count == 8 + 4 * big.count)  // a count, then the memory as is
    }

    @Test func wrongTypesAndTrailingBytesAreErrors() throws {
        let bytes = try WireCoding.encode(sample(5))
        #expect(throws: (any Error).self) { try WireCoding.decode([Double].self, from: bytes) }
        #expect(throws: (any Error).self) { try WireCoding.decode(Int.self, from: WireCoding.encode([1, 2, 3])) }
        #expect(throws: WireError.self) { try WireCoding.decode(Bool.self, from: [2]) }
    }

    /// Seeded random corruption of valid frames: flipped bytes, truncation,
    /// extension and random lengths. Every case must end in a value or a
    /// thrown error, never a crash, a hang or an allocation of the size a
    /// corrupt length claims.
    @Test func corruptInputNeverCrashesTheDecoders() throws {
        var rng = SplitMix(seed: 0xF1EE7)
        let task = RemoteTask("fuzz") { (r: Record) in r }
        let originals: [[UInt8]] =
            try (0..<8).map { try WireCoding.encode(sample($0)) }
            + [
                try WireCoding.encode([sample(1), sample(2)]), try WireCoding.encode([UInt64](repeating: 9, count: 40)),
                try WireCoding.encode(Dictionary(uniqueKeysWithValues: (0..<40).map { ("w\($0)", $0) })),
                try WireCoding.encode(["a": sample(3), "b": sample(4)]),
            ]
        var decoded = 0
        var rejected = 0
        for case_ in 0..<20_000 {
            var bytes = originals[case_ % originals.count]
            switch rng.next() % 4 {
            case 0:
                for _ in 0..<(1 + rng.next() % 4) {
                    bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                }
            case 1: bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            case 2: bytes += (0..<(rng.next() % 16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            default:
                let at = Int(rng.next() % UInt64(max(bytes.count - 8, 1)))
                let value = rng.next() >> (rng.next() % 64)
                for k in 0..<min(8, bytes.count - at) {
                    bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))
                }
            }
            // The value decoder.
            if (try? WireCoding.decode(Record.self, from: bytes)) != nil { decoded += 1 } else { rejected += 1 }
            _ = try? WireCoding.decode([Record].self, from: bytes)
            _ = try? WireCoding.decode([UInt64].self, from: bytes)
            _ = try? WireCoding.decode([String: Int].self, from: bytes)
            _ = try? WireCoding.decode([String: Record].self, from: bytes)
            // The frame reader, over a pipe holding a header and the bytes.
            var frame = bytes
            if frame.count >= FrameHeader.size {
                _ = try? frame.withUnsafeBytes { try FrameHeader.parse($0, maxLength: 1 << 20) }
            }
            // The reply reader of a remote task.
            _ = try? bytes.withUnsafeBytes { raw in
                var r = WireReader(raw)
                return try task.readOutcome(&r, start: 0, count: 2, mode: case_ % 2 == 0 ? .failFast : .collect)
            }
            frame.removeAll()
        }
        #expect(decoded + rejected == 20_000 && rejected > 8_000)
    }

    @Test func theFrameReaderRejectsBadFrames() throws {
        func read(_ bytes: [UInt8]) throws -> FrameHeader? {
            var fds: [Int32] = [0, 0]
            pipe(&fds)
            defer { close(fds[0]) }
            bytes.withUnsafeBytes { _ = try? writeAll(fds[1], $0) }
            close(fds[1])
            return try FrameReader(fd: fds[0], maxLength: 1 << 10).next()?.0
        }
        let good = WireBuffer()
        try appendFrame(.reply, seq: 9, to: good) { $0.append(UInt64(1)) }
        #expect(try read(good.array) == FrameHeader(length: 8, kind: .reply, seq: 9))
        #expect(try read([]) == nil)  // a clean end
        #expect(throws: FrameError.self) { try read(Array(good.array.dropLast())) }  // truncated
        var badKind = good.array
        badKind[4] = 99
        #expect(throws: FrameError.self) { try read(badKind) }
        var huge = good.array
        huge[3] = 0x7F  // a length far over the limit: refused before any allocation
        #expect(throws: FrameError.self) { try read(huge) }
    }
}

/// A small seeded generator, so the corruption cases repeat exactly.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
