// Arrays and dictionaries of any `Codable` elements, written without a
// container per collection or a dynamic cast per element: how an element
// is written is decided once per collection (`WireElements`), and the
// elements follow one another.
//
// - Array (elements not fixed-width numbers): UInt64 count, then the
//   elements in order (the form of an unkeyed container).
// - Dictionary: UInt64 count, then each key followed by its value. A key
//   seen twice is corrupt data.

/// Collections the encoder writes element by element itself.
@usableFromInline
protocol WireCollectionEncodable {
    func encodeWire(_ encoder: WireEncoderImpl) throws
}

/// Collections the decoder reads element by element itself.
protocol WireCollectionDecodable {
    static func decodeWire(_ decoder: WireDecoderImpl) throws -> Self
}

/// How one type's values are written and read, decided once for a whole
/// collection of them.
enum WireElements {
    /// Writes a `T`: one step for raw types, `Codable` otherwise.
    static func writer<T: Encodable>(_: T.Type) -> (T, WireEncoderImpl) throws -> Void {
        if !(T.self is any WireOptionalEncodable.Type), let raw = T.self as? any WireRaw.Type {
            return rawWriter(raw, T.self)
        }
        return { value, encoder in try encoder.encodeValue(value) }
    }

    /// Reads a `T`: one step for raw types, `Codable` otherwise.
    static func reader<T: Decodable>(_: T.Type) -> (WireDecoderImpl) throws -> T {
        if let raw = T.self as? any WireRaw.Type { return rawReader(raw, T.self) }
        return { decoder in try decoder.decodeValue(T.self) }
    }

    // `R` and `T` are the same type (`T.self as? R.Type` succeeded), so the
    // bit casts between them are identities.
    private static func rawWriter<R: WireRaw, T>(_: R.Type, _: T.Type) -> (T, WireEncoderImpl) throws -> Void {
        { value, encoder in unsafeBitCast(value, to: R.self).encodeRaw(into: encoder.buffer) }
    }

    private static func rawReader<R: WireRaw, T>(_: R.Type, _: T.Type) -> (WireDecoderImpl) throws -> T {
        { decoder in unsafeBitCast(try R.decodeRaw(from: &decoder.reader), to: T.self) }
    }

    /// Room to reserve for `n` elements read from the wire: a corrupt count
    /// is caught as the elements run out, before memory is spent on it.
    static func reservation(_ n: Int) -> Int { min(n, 1 << 16) }
}

extension Array: WireCollectionEncodable where Element: Encodable {
    @usableFromInline func encodeWire(_ encoder: WireEncoderImpl) throws {
        if let raw = Element.self as? any WireRaw.Type, !(Element.self is any WireOptionalEncodable.Type) {
            encodeRawElements(raw, into: encoder.buffer)
            return
        }
        encoder.buffer.append(UInt64(count))
        let write = WireElements.writer(Element.self)
        for element in self { try write(element, encoder) }
    }

    // `R` is `Element`, so the cast is an identity.
    private func encodeRawElements<R: WireRaw>(_: R.Type, into buffer: WireBuffer) {
        R.encodeElements(unsafeBitCast(self, to: [R].self), into: buffer)
    }
}

extension Array: WireCollectionDecodable where Element: Decodable {
    static func decodeWire(_ decoder: WireDecoderImpl) throws -> [Element] {
        let n = try decoder.reader.readCount()
        if let raw = Element.self as? any WireRaw.Type { return try decodeRawElements(raw, n, &decoder.reader) }
        let read = WireElements.reader(Element.self)
        var elements: [Element] = []
        elements.reserveCapacity(WireElements.reservation(n))
        for _ in 0..<n { elements.append(try read(decoder)) }
        return elements
    }

    // `R` is `Element`, so the cast is an identity.
    private static func decodeRawElements<R: WireRaw>(
        _: R.Type, _ n: Int, _ reader: inout WireReader
    ) throws -> [Element] {
        unsafeBitCast(try R.decodeElements(count: n, from: &reader), to: [Element].self)
    }
}

extension Dictionary: WireCollectionEncodable where Key: Encodable, Value: Encodable {
    @usableFromInline func encodeWire(_ encoder: WireEncoderImpl) throws {
        if Key.self == String.self, let raw = Value.self as? any WireRaw.Type,
            !(Value.self is any WireOptionalEncodable.Type)
        {
            encodeStringKeyed(raw, into: encoder.buffer)
            return
        }
        encoder.buffer.append(UInt64(count))
        let writeKey = WireElements.writer(Key.self)
        let writeValue = WireElements.writer(Value.self)
        for (key, value) in self {
            try writeKey(key, encoder)
            try writeValue(value, encoder)
        }
    }

    // `Key` is `String` and `R` is `Value`, so the cast is an identity.
    private func encodeStringKeyed<R: WireRaw>(_: R.Type, into buffer: WireBuffer) {
        R.encodeStringKeyed(unsafeBitCast(self, to: [String: R].self), into: buffer)
    }
}

extension Dictionary: WireCollectionDecodable where Key: Decodable, Value: Decodable {
    static func decodeWire(_ decoder: WireDecoderImpl) throws -> [Key: Value] {
        let n = try decoder.reader.readCount(minBytes: 2)
        if Key.self == String.self, let raw = Value.self as? any WireRaw.Type {
            return try decodeStringKeyed(raw, n, &decoder.reader)
        }
        let readKey = WireElements.reader(Key.self)
        let readValue = WireElements.reader(Value.self)
        var dictionary = [Key: Value](minimumCapacity: WireElements.reservation(n))
        for _ in 0..<n {
            let key = try readKey(decoder)
            guard dictionary.updateValue(try readValue(decoder), forKey: key) == nil else {
                throw WireError.corrupt("a dictionary holds the key \(key) twice")
            }
        }
        return dictionary
    }

    // `Key` is `String` and `R` is `Value`, so the cast is an identity.
    private static func decodeStringKeyed<R: WireRaw>(
        _: R.Type, _ n: Int, _ reader: inout WireReader
    ) throws -> [Key: Value] {
        unsafeBitCast(try R.decodeStringKeyed(count: n, from: &reader), to: [Key: Value].self)
    }
}
