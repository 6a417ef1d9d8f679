import Foundation

/// Types whose wire form is written in one step: fixed-width numbers are
/// their own bytes, strings and byte blobs a length and their bytes, and an
/// array of fixed-width numbers a count and one copy of its memory (nothing
/// per element). The encoder and decoder check for these before falling
/// back to `Codable`.
@usableFromInline
protocol WireRaw {
    func encodeRaw(into buffer: WireBuffer)
    static func decodeRaw(from reader: inout WireReader) throws -> Self

    // Collections of raw values (WireCollections.swift). The default
    // implementations below are compiled once per conforming type, so
    // the loops over the elements call no generic code.
    static func encodeElements(_ elements: [Self], into buffer: WireBuffer)
    static func decodeElements(count: Int, from reader: inout WireReader) throws -> [Self]
    static func encodeStringKeyed(_ dictionary: [String: Self], into buffer: WireBuffer)
    static func decodeStringKeyed(count: Int, from reader: inout WireReader) throws -> [String: Self]
}

extension WireRaw {
    @usableFromInline
    static func encodeElements(_ elements: [Self], into buffer: WireBuffer) {
        buffer.append(UInt64(elements.count))
        for element in elements { element.encodeRaw(into: buffer) }
    }

    @usableFromInline
    static func decodeElements(count: Int, from reader: inout WireReader) throws -> [Self] {
        var elements: [Self] = []
        elements.reserveCapacity(WireElements.reservation(count))
        for _ in 0..<count { elements.append(try decodeRaw(from: &reader)) }
        return elements
    }

    @usableFromInline
    static func encodeStringKeyed(_ dictionary: [String: Self], into buffer: WireBuffer) {
        buffer.append(UInt64(dictionary.count))
        for (key, value) in dictionary {
            buffer.appendString(key)
            value.encodeRaw(into: buffer)
        }
    }

    @usableFromInline
    static func decodeStringKeyed(count: Int, from reader: inout WireReader) throws -> [String: Self] {
        var dictionary = [String: Self](minimumCapacity: WireElements.reservation(count))
        for _ in 0..<count {
            let key = try reader.readString()
            guard dictionary.updateValue(try decodeRaw(from: &reader), forKey: key) == nil else {
                throw WireError.corrupt("a dictionary holds the key \(key) twice")
            }
        }
        return dictionary
    }
}

/// Numbers whose every bit pattern is a valid value, so an array of them
/// can be copied from the wire as one block. (`Bool` is not one of them.)
@usableFromInline
protocol WireTrivial: WireRaw, BitwiseCopyable {}

extension WireTrivial {
    @inlinable
    func encodeRaw(into buffer: WireBuffer) {
        withUnsafeBytes(of: self) { buffer.append($0) }
    }

    @inlinable
    static func decodeRaw(from reader: inout WireReader) throws -> Self {
        let raw = try reader.readBytes(MemoryLayout<Self>.size)
        return raw.loadUnaligned(as: Self.self)
    }
}

extension Int: WireTrivial {}
extension Int8: WireTrivial {}
extension Int16: WireTrivial {}
extension Int32: WireTrivial {}
extension Int64: WireTrivial {}
extension UInt: WireTrivial {}
extension UInt8: WireTrivial {}
extension UInt16: WireTrivial {}
extension UInt32: WireTrivial {}
extension UInt64: WireTrivial {}
extension Float: WireTrivial {}
extension Double: WireTrivial {}

extension Bool: WireRaw {
    @usableFromInline func encodeRaw(into buffer: WireBuffer) { buffer.append(UInt8(self ? 1 : 0)) }
    @usableFromInline static func decodeRaw(from reader: inout WireReader) throws -> Bool {
        switch try reader.read(UInt8.self) {
        case 0: return false
        case 1: return true
        case let b: throw WireError.corrupt("\(b) is not a Bool")
        }
    }
}

extension String: WireRaw {
    @usableFromInline func encodeRaw(into buffer: WireBuffer) { buffer.appendString(self) }
    @usableFromInline static func decodeRaw(from reader: inout WireReader) throws -> String { try reader.readString() }
}

extension Array: WireRaw where Element: WireTrivial {
    @inlinable
    func encodeRaw(into buffer: WireBuffer) {
        guard buffer.fits(8 + count * MemoryLayout<Element>.stride) else { return }
        buffer.append(UInt64(count))
        if buffer.allowsExternal && count * MemoryLayout<Element>.stride >= WireBuffer.externalThreshold {
            buffer.appendExternal(self)
        } else {
            withUnsafeBytes { buffer.append($0) }
        }
    }

    @inlinable
    static func decodeRaw(from reader: inout WireReader) throws -> [Element] {
        let n = try reader.readCount(minBytes: MemoryLayout<Element>.stride)
        guard n > 0 else { return [] }
        return try [Element](filling: n) {
            try reader.copyReleasing(n * MemoryLayout<Element>.stride, to: UnsafeMutableRawPointer($0.baseAddress!))
        }
    }
}

extension Data: WireRaw {
    @usableFromInline func encodeRaw(into buffer: WireBuffer) {
        guard buffer.fits(8 + count) else { return }
        buffer.append(UInt64(count))
        withUnsafeBytes { buffer.append($0) }
    }

    @usableFromInline static func decodeRaw(from reader: inout WireReader) throws -> Data {
        let n = try reader.readCount()
        return Data(try reader.readBytes(n))
    }
}

/// `Optional` on the wire: a tag byte (0 none, 1 some), then the value.
@usableFromInline
protocol WireOptionalEncodable {
    func encodeWire(_ encoder: WireEncoderImpl) throws
}

protocol WireOptionalDecodable {
    static func decodeWire(_ decoder: WireDecoderImpl) throws -> Self
}

extension Optional: WireOptionalEncodable where Wrapped: Encodable {
    @usableFromInline func encodeWire(_ encoder: WireEncoderImpl) throws {
        switch self {
        case .none: encoder.buffer.append(UInt8(0))
        case .some(let value):
            encoder.buffer.append(UInt8(1))
            try encoder.encodeValue(value)
        }
    }
}

extension Optional: WireOptionalDecodable where Wrapped: Decodable {
    static func decodeWire(_ decoder: WireDecoderImpl) throws -> Wrapped? {
        switch try decoder.reader.read(UInt8.self) {
        case 0: return nil
        case 1: return try decoder.decodeValue(Wrapped.self)
        case let b: throw WireError.corrupt("\(b) is not an optional's tag")
        }
    }
}
