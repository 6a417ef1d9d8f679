import CFleetPNG
import Foundation

/// An 8-bit grayscale image, read from and written to PNG through libpng.
struct GrayImage: Sendable {
    let width: Int
    let height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height)
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Reads `path`; a file that is not an 8-bit-convertible grayscale PNG
    /// is an error naming it.
    init(contentsOf path: String) throws {
        var raw: UnsafeMutablePointer<UInt8>?
        var w: Int32 = 0
        var h: Int32 = 0
        var message = [CChar](repeating: 0, count: 512)
        guard cfleet_png_read_gray8(path, &raw, &w, &h, &message, message.count) == 0, let raw else {
            throw DemoError("cannot read \(path): \(cMessage(message))")
        }
        defer { free(raw) }
        width = Int(w)
        height = Int(h)
        pixels = Array(UnsafeBufferPointer(start: raw, count: width * height))
    }

    /// Writes the image as a PNG (zlib `level` 0-9).
    func write(to path: String, level: Int32 = 6) throws {
        var message = [CChar](repeating: 0, count: 512)
        let rc = pixels.withUnsafeBufferPointer {
            cfleet_png_write_gray8(path, $0.baseAddress, Int32(width), Int32(height), level, &message, message.count)
        }
        guard rc == 0 else { throw DemoError("cannot write \(path): \(cMessage(message))") }
    }
}

/// A demo failure with a message for the user.
struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The text in a C string buffer.
private func cMessage(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
