// The wire format of a `Codable` value (see PROTOCOL.md beside the
// backend): a compact binary form, written in one pass.
//
// - Fixed-width numbers: their little-endian bytes. Bool: one byte.
// - String: UInt32 byte count, UTF-8 bytes. Data: UInt64 count, bytes.
// - Array of fixed-width numbers: UInt64 count, then its memory in one copy.
// - Optional: tag byte (0 none, 1 some), then the value.
// - Unkeyed container: UInt64 element count, then the elements in order.
// - Keyed container: UInt64 entry count, then per entry the key (as a
//   string), a UInt64 byte length and the value, so a decoder can find
//   keys in any order and skip those it does not know.
// - Arrays of other elements and dictionaries: see WireCollections.swift.

/// Thrown when a value takes more than its buffer's `limit`.
struct WireLimitExceeded: Error {}

/// Encodes `Codable` values into Fleet's binary wire form.
public enum WireCoding {
    /// Appends `value`'s wire form to `buffer`.
    @inlinable
    static func encode<T: Encodable>(_ value: T, into buffer: WireBuffer) throws {
        // Optionals first: a cast to `WireRaw` would look inside them.
        if !(T.self is any WireOptionalEncodable.Type), let raw = value as? any WireRaw {
            raw.encodeRaw(into: buffer)
        } else {
            try WireEncoderImpl(buffer).encodeValue(value)
        }
        try buffer.checkLimit()
    }

    /// The wire form of `value`.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let buffer = WireBuffer()
        try encode(value, into: buffer)
        return buffer.array
    }

    /// Decodes a value of type `T` from the front of `reader`.
    @inlinable
    static func decode<T: Decodable>(_ type: T.Type, from reader: inout WireReader) throws -> T {
        if let raw = T.self as? any WireRaw.Type {
            return try raw.decodeRaw(from: &reader) as! T
        }
        let decoder = WireDecoderImpl(reader)
        let value = try decoder.decodeValue(T.self)
        reader = decoder.reader
        return value
    }

    /// Decodes a value of type `T` from exactly `bytes`: trailing bytes are
    /// an error.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { raw in
            var reader = WireReader(raw)
            let value = try decode(T.self, from: &reader)
            guard reader.isAtEnd else { throw WireError.corrupt("\(reader.remaining) bytes left after the value") }
            return value
        }
    }
}

/// The `Encoder` behind `WireCoding`. Containers write in place, in the order
/// their values are encoded; a container nested in a keyed entry keeps that
/// entry's length up to date as it writes.
@usableFromInline
final class WireEncoderImpl: Encoder {
    @usableFromInline let buffer: WireBuffer
    /// Where the enclosing keyed entry's length lives, for an encoder handed
    /// out by `superEncoder`.
    let lengthSlot: [Int]
    @usableFromInline var codingPath: [any CodingKey] = []
    @usableFromInline var userInfo: [CodingUserInfoKey: Any] = [:]

    @usableFromInline
    init(_ buffer: WireBuffer, lengthSlot: [Int] = []) {
        self.buffer = buffer
        self.lengthSlot = lengthSlot
    }

    @usableFromInline
    func encodeValue<T: Encodable>(_ value: T) throws {
        // Optionals first: a cast to `WireRaw` would look inside them.
        if T.self is any WireOptionalEncodable.Type, let optional = value as? any WireOptionalEncodable {
            try optional.encodeWire(self)
        } else if let raw = value as? any WireRaw {
            raw.encodeRaw(into: buffer)
        } else if let collection = value as? any WireCollectionEncodable {
            try collection.encodeWire(self)
        } else {
            try value.encode(to: self)
        }
        try buffer.checkLimit()
        updateSlot(lengthSlot)
    }

    /// Brings the lengths of the keyed entries that enclose the current
    /// write up to date.
    func updateSlot(_ slots: [Int]) {
        for slot in slots { updateSlot(at: slot) }
    }

    func updateSlot(at slot: Int) {
        buffer.patch(UInt64(buffer.count - slot - 8 + buffer.externalBytes(after: slot + 8)), at: slot)
    }

    @usableFromInline
    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(WireKeyedEncoder<Key>(self, enclosing: lengthSlot))
    }

    @usableFromInline
    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        WireUnkeyedEncoder(self, enclosing: lengthSlot)
    }

    @usableFromInline
    func singleValueContainer() -> any SingleValueEncodingContainer {
        WireSingleEncoder(self)
    }
}

struct WireSingleEncoder: SingleValueEncodingContainer {
    let encoder: WireEncoderImpl
    var codingPath: [any CodingKey] { encoder.codingPath }

    init(_ encoder: WireEncoderImpl) { self.encoder = encoder }

    mutating func encodeNil() throws {
        encoder.buffer.append(UInt8(0))
        encoder.updateSlot(encoder.lengthSlot)
    }
    mutating func encode<T: Encodable>(_ value: T) throws { try encoder.encodeValue(value) }
}

/// What keyed and unkeyed containers share: an entry count written up
/// front and kept up to date, and the enclosing entries' lengths.
class WireCountingContainer {
    let encoder: WireEncoderImpl
    let countOffset: Int
    let enclosing: [Int]
    private(set) var count = 0
    var codingPath: [any CodingKey] { encoder.codingPath }

    init(_ encoder: WireEncoderImpl, enclosing: [Int]) {
        self.encoder = encoder
        self.enclosing = enclosing
        countOffset = encoder.buffer.count
        encoder.buffer.append(UInt64(0))
        encoder.updateSlot(enclosing)
    }

    func countOne() {
        count += 1
        encoder.buffer.patch(UInt64(count), at: countOffset)
    }
}

final class WireUnkeyedEncoder: WireCountingContainer, UnkeyedEncodingContainer {
    private func wrote() {
        countOne()
        encoder.updateSlot(enclosing)
    }

    func encodeNil() throws {
        encoder.buffer.append(UInt8(0))
        wrote()
    }

    func encode<T: Encodable>(_ value: T) throws {
        try encoder.encodeValue(value)
        wrote()
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        defer { wrote() }
        return KeyedEncodingContainer(WireKeyedEncoder<NestedKey>(encoder, enclosing: enclosing))
    }

    func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        defer { wrote() }
        return WireUnkeyedEncoder(encoder, enclosing: enclosing)
    }

    func superEncoder() -> any Encoder {
        defer { wrote() }
        return WireEncoderImpl(encoder.buffer, lengthSlot: enclosing)
    }
}

final class WireKeyedEncoder<Key: CodingKey>: WireCountingContainer, KeyedEncodingContainerProtocol {

    /// Writes the key and a length placeholder; returns the placeholder's offset.
    private func beginEntry(_ key: Key) -> Int { beginEntry(named: key.stringValue) }

    private func beginEntry(named name: String) -> Int {
        countOne()
        encoder.buffer.appendString(name)
        let slot = encoder.buffer.count
        encoder.buffer.append(UInt64(0))
        return slot
    }

    private func endEntry(_ slot: Int) {
        encoder.updateSlot(at: slot)
        encoder.updateSlot(enclosing)
    }

    func encodeNil(forKey key: Key) throws {
        let slot = beginEntry(key)
        encoder.buffer.append(UInt8(0))
        endEntry(slot)
    }

    func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        let slot = beginEntry(key)
        try encoder.encodeValue(value)
        endEntry(slot)
    }

    // Absent optionals are left out; `decodeIfPresent` finds no key.
    func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) }
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let slot = beginEntry(key)
        defer { endEntry(slot) }
        return KeyedEncodingContainer(WireKeyedEncoder<NestedKey>(encoder, enclosing: enclosing + [slot]))
    }

    func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let slot = beginEntry(key)
        defer { endEntry(slot) }
        return WireUnkeyedEncoder(encoder, enclosing: enclosing + [slot])
    }

    func superEncoder() -> any Encoder {
        WireEncoderImpl(encoder.buffer, lengthSlot: enclosing + [beginEntry(named: "super")])
    }

    func superEncoder(forKey key: Key) -> any Encoder {
        WireEncoderImpl(encoder.buffer, lengthSlot: enclosing + [beginEntry(key)])
    }
}
