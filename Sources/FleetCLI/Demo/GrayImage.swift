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

    /// Writes the image as a PNG (zlib `level` 0-9).
    func write(to path: String, level: Int32 = 6) throws {
        var message = [CChar](repeating: 0, count: 512)
        let rc = pixels.withUnsafeBufferPointer {
            cfleet_png_write_gray8(path, $0.baseAddress, Int32(width), Int32(height), level, &message, message.count)
        }
        guard rc == 0 else { throw DemoError("cannot write \(path): \(cMessage(message))") }
    }
}

/// A PNG file read one row at a time (see `cfleet_png_rows_open`).
final class PNGRows {
    let width: Int
    let height: Int
    private let reader: OpaquePointer
    private let path: String
    private let message = UnsafeMutablePointer<CChar>.allocate(capacity: 512)

    init(_ path: String) throws {
        var w: Int32 = 0
        var h: Int32 = 0
        var message = [CChar](repeating: 0, count: 512)
        guard let reader = cfleet_png_rows_open(path, &w, &h, &message, message.count) else {
            throw DemoError("cannot read \(path): \(cMessage(message))")
        }
        self.reader = reader
        self.path = path
        width = Int(w)
        height = Int(h)
    }

    deinit {
        cfleet_png_rows_close(reader)
        message.deallocate()
    }

    /// Decodes the next row into `row`, which holds `width` bytes.
    func next(into row: UnsafeMutablePointer<UInt8>) throws {
        guard cfleet_png_rows_next(reader, row, message, 512) == 0 else {
            throw DemoError("cannot read \(path): \(String(cString: message))")
        }
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
