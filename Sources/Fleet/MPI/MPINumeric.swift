#if MPI
internal import CMPI

/// The element types MPI moves and reduces natively: arrays of these go
/// straight from their own memory, with no encoding copy.
public protocol MPINumeric: BitwiseCopyable, Codable, Sendable {
    /// The matching MPI datatype.
    static var mpiElement: MPIElement { get }
}

/// MPI's predefined datatypes for Swift's fixed-size numbers.
public enum MPIElement: Sendable {
    case int8, int16, int32, int64, uint8, uint16, uint32, uint64, float, double

    var datatype: MPI_Datatype {
        switch self {
        case .int8: cmpi_int8()
        case .int16: cmpi_int16()
        case .int32: cmpi_int32()
        case .int64: cmpi_int64()
        case .uint8: cmpi_uint8()
        case .uint16: cmpi_uint16()
        case .uint32: cmpi_uint32()
        case .uint64: cmpi_uint64()
        case .float: cmpi_float()
        case .double: cmpi_double()
        }
    }
}

extension Int8: MPINumeric { public static var mpiElement: MPIElement { .int8 } }
extension Int16: MPINumeric { public static var mpiElement: MPIElement { .int16 } }
extension Int32: MPINumeric { public static var mpiElement: MPIElement { .int32 } }
extension Int64: MPINumeric { public static var mpiElement: MPIElement { .int64 } }
extension Int: MPINumeric { public static var mpiElement: MPIElement { MemoryLayout<Int>.size == 8 ? .int64 : .int32 } }
extension UInt8: MPINumeric { public static var mpiElement: MPIElement { .uint8 } }
extension UInt16: MPINumeric { public static var mpiElement: MPIElement { .uint16 } }
extension UInt32: MPINumeric { public static var mpiElement: MPIElement { .uint32 } }
extension UInt64: MPINumeric { public static var mpiElement: MPIElement { .uint64 } }
extension UInt: MPINumeric {
    public static var mpiElement: MPIElement { MemoryLayout<UInt>.size == 8 ? .uint64 : .uint32 }
}
extension Float: MPINumeric { public static var mpiElement: MPIElement { .float } }
extension Double: MPINumeric { public static var mpiElement: MPIElement { .double } }

/// An element-wise reduction MPI carries out itself.
public enum ReductionOp: Sendable {
    case sum, min, max, product

    var op: MPI_Op {
        switch self {
        case .sum: cmpi_sum()
        case .min: cmpi_min()
        case .max: cmpi_max()
        case .product: cmpi_prod()
        }
    }
}
#endif
