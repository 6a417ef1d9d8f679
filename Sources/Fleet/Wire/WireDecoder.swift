/// The `Decoder` behind `WireCoding`: reads the form `WireEncoderImpl`
/// writes, checking every count and length against the bytes left.
@usableFromInline
final class WireDecoderImpl: Decoder {
    @usableFromInline var reader: WireReader
    @usableFromInline var codingPath: [any CodingKey] = []
    @usableFromInline var userInfo: [CodingUserInfoKey: Any] = [:]
    /// Nesting depth, bounded so corrupt input cannot exhaust the stack.
    let depth: Int

    @usableFromInline
    init(_ reader: WireReader, depth: Int = 0) {
        self.reader = reader
        self.depth = depth
    }

    static let maxDepth = 512

    @usableFromInline
    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        if let raw = T.self as? any WireRaw.Type {
            return try raw.decodeRaw(from: &reader) as! T
        }
        if let optional = T.self as? any WireOptionalDecodable.Type {
            return try optional.decodeWire(self) as! T
        }
        guard depth < Self.maxDepth else { throw WireError.corrupt("values nested deeper than \(Self.maxDepth)") }
        return try T(from: self)
    }

    /// A decoder for the nested value in `bytes`.
    func nested(_ bytes: UnsafeRawBufferPointer) throws -> WireDecoderImpl {
        guard depth < Self.maxDepth else { throw WireError.corrupt("values nested deeper than \(Self.maxDepth)") }
        return WireDecoderImpl(WireReader(bytes), depth: depth + 1)
    }

    @usableFromInline
    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(try WireKeyedDecoder<Key>(self))
    }

    @usableFromInline
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try WireUnkeyedDecoder(self)
    }

    @usableFromInline
    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        WireSingleDecoder(decoder: self)
    }
}

struct WireSingleDecoder: SingleValueDecodingContainer {
    let decoder: WireDecoderImpl
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool {
        guard decoder.reader.remaining >= 1,
            decoder.reader.base.load(fromByteOffset: decoder.reader.offset, as: UInt8.self) == 0
        else { return false }
        decoder.reader.offset += 1
        return true
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decodeValue(T.self) }
}

final class WireUnkeyedDecoder: UnkeyedDecodingContainer {
    let decoder: WireDecoderImpl
    let count: Int?
    private(set) var currentIndex = 0
    var codingPath: [any CodingKey] { decoder.codingPath }
    var isAtEnd: Bool { currentIndex >= count! }

    init(_ decoder: WireDecoderImpl) throws {
        self.decoder = decoder
        count = try decoder.reader.readCount()
    }

    private func next() throws {
        guard currentIndex < count! else { throw WireError.corrupt("read past the end of a list of \(count!)") }
        currentIndex += 1
    }

    func decodeNil() throws -> Bool {
        guard currentIndex < count!, decoder.reader.remaining >= 1,
            decoder.reader.base.load(fromByteOffset: decoder.reader.offset, as: UInt8.self) == 0
        else { return false }
        decoder.reader.offset += 1
        currentIndex += 1
        return true
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try next()
        return try decoder.decodeValue(T.self)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey>
    {
        try next()
        return try decoder.container(keyedBy: type)
    }

    func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next()
        return try decoder.unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        try next()
        return decoder
    }
}

final class WireKeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: WireDecoderImpl
    /// Each entry's key and the bytes of its value.
    private var entries: [(key: String, value: UnsafeRawBufferPointer)] = []
    var codingPath: [any CodingKey] { decoder.codingPath }

    init(_ decoder: WireDecoderImpl) throws {
        self.decoder = decoder
        let n = try decoder.reader.readCount(minBytes: 12)
        entries.reserveCapacity(n)
        for _ in 0..<n {
            let key = try decoder.reader.readString()
            let length = try decoder.reader.read(UInt64.self)
            guard length <= UInt64(decoder.reader.remaining) else {
                throw WireError.corrupt("entry \"\(key)\" claims \(length) bytes, \(decoder.reader.remaining) left")
            }
            entries.append((key, try decoder.reader.readBytes(Int(length))))
        }
    }

    var allKeys: [Key] { entries.compactMap { Key(stringValue: $0.key) } }

    func contains(_ key: Key) -> Bool { find(key) != nil }

    private func find(_ key: Key) -> UnsafeRawBufferPointer? { find(named: key.stringValue) }

    private func find(named name: String) -> UnsafeRawBufferPointer? {
        for entry in entries where entry.key == name { return entry.value }
        return nil
    }

    private func value(_ key: Key) throws -> UnsafeRawBufferPointer {
        guard let bytes = find(key) else {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: codingPath, debugDescription: "no value for \"\(key.stringValue)\""))
        }
        return bytes
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        let bytes = try value(key)
        return bytes.count == 1 && bytes[0] == 0
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        let nested = try decoder.nested(try value(key))
        let result = try nested.decodeValue(T.self)
        guard nested.reader.isAtEnd else { throw WireError.corrupt("entry \"\(key.stringValue)\" has bytes left over") }
        return result
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try decoder.nested(try value(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder.nested(try value(key)).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        guard let bytes = find(named: "super") else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "no super entry"))
        }
        return try decoder.nested(bytes)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        try decoder.nested(try value(key))
    }
}
