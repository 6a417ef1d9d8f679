/// The `Decoder` behind `WireCoding`: reads the form `WireEncoderImpl`
/// writes, checking every count and length against the bytes left.
@usableFromInline
final class WireDecoderImpl: Decoder {
    // Not checked for exclusive access at run time (a check on every read
    // costs more than the read): a decoder runs on one thread, and while
    // `reader` is passed `inout` (to a raw type's decodeRaw or a collection's
    // loop) nothing else reaches this decoder.
    @exclusivity(unchecked) @usableFromInline var reader: WireReader
    @usableFromInline var codingPath: [any CodingKey] = []
    @usableFromInline var userInfo: [CodingUserInfoKey: Any] = [:]
    /// How many values this one is nested in, bounded so that corrupt
    /// input cannot exhaust the stack, whatever containers it nests.
    var depth: Int

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
        depth += 1
        defer { depth -= 1 }
        if let collection = T.self as? any WireCollectionDecodable.Type {
            return try collection.decodeWire(self) as! T
        }
        return try T(from: self)
    }

    /// A decoder for the nested value in `bytes`, at this depth.
    func nested(_ bytes: UnsafeRawBufferPointer) -> WireDecoderImpl {
        WireDecoderImpl(WireReader(bytes), depth: depth)
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
    /// The entries' bytes: per entry a UInt32 key length, the key, a
    /// UInt64 value length and the value, all checked against the frame
    /// when the container was opened.
    private let entries: UnsafeRawBufferPointer
    /// Where to look first: the entry after the last one found, since
    /// values are mostly decoded in the order they were encoded.
    private var cursor = 0
    var codingPath: [any CodingKey] { decoder.codingPath }

    init(_ decoder: WireDecoderImpl) throws {
        self.decoder = decoder
        let n = try decoder.reader.readCount(minBytes: 12)
        let start = decoder.reader.offset
        for _ in 0..<n {
            let keyLength = Int(try decoder.reader.read(UInt32.self))
            _ = try decoder.reader.readBytes(keyLength)
            let length = try decoder.reader.read(UInt64.self)
            guard length <= UInt64(decoder.reader.remaining) else {
                throw WireError.corrupt("an entry claims \(length) bytes, \(decoder.reader.remaining) left")
            }
            _ = try decoder.reader.readBytes(Int(length))
        }
        entries = UnsafeRawBufferPointer(
            start: decoder.reader.base + start, count: decoder.reader.offset - start)
    }

    /// The entry at byte `at`: its key, its value, and where the next begins.
    private func entry(at offset: Int) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, next: Int) {
        let keyLength = Int(UInt32(littleEndian: entries.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let valueAt = offset + 4 + keyLength + 8
        let length = Int(UInt64(littleEndian: entries.loadUnaligned(fromByteOffset: valueAt - 8, as: UInt64.self)))
        return (
            UnsafeRawBufferPointer(rebasing: entries[(offset + 4)..<(offset + 4 + keyLength)]),
            UnsafeRawBufferPointer(rebasing: entries[valueAt..<(valueAt + length)]), valueAt + length
        )
    }

    var allKeys: [Key] {
        var keys: [Key] = []
        var at = 0
        while at < entries.count {
            let e = entry(at: at)
            if let name = String(validating: e.key, as: UTF8.self), let key = Key(stringValue: name) {
                keys.append(key)
            }
            at = e.next
        }
        return keys
    }

    func contains(_ key: Key) -> Bool { find(key) != nil }

    private func find(_ key: Key) -> UnsafeRawBufferPointer? { find(named: key.stringValue) }

    /// The value of the entry named `name`: from the cursor to the end, then
    /// from the start to the cursor.
    private func find(named name: String) -> UnsafeRawBufferPointer? {
        var name = name
        return name.withUTF8 { wanted in
            var at = cursor
            var wrapped = false
            while true {
                if at >= entries.count {
                    if wrapped || cursor == 0 { return nil }
                    wrapped = true
                    at = 0
                }
                if wrapped && at >= cursor { return nil }
                let e = entry(at: at)
                if e.key.count == wanted.count && e.key.elementsEqual(UnsafeRawBufferPointer(wanted)) {
                    cursor = e.next
                    return e.value
                }
                at = e.next
            }
        }
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
        let nested = decoder.nested(try value(key))
        let result = try nested.decodeValue(T.self)
        guard nested.reader.isAtEnd else { throw WireError.corrupt("entry \"\(key.stringValue)\" has bytes left over") }
        return result
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try decoder.nested(try value(key)).nestedDeeper().container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder.nested(try value(key)).nestedDeeper().unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        guard let bytes = find(named: "super") else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "no super entry"))
        }
        return try decoder.nested(bytes).nestedDeeper()
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        try decoder.nested(try value(key)).nestedDeeper()
    }
}

extension WireDecoderImpl {
    /// This decoder one level deeper, for containers opened by hand (which
    /// do not pass through `decodeValue`).
    func nestedDeeper() throws -> WireDecoderImpl {
        guard depth < Self.maxDepth else { throw WireError.corrupt("values nested deeper than \(Self.maxDepth)") }
        depth += 1
        return self
    }
}
