import Synchronization

/// A lazy call in a task graph: the result of a function (or remote task)
/// whose arguments are plain values or other nodes. Nothing runs until
/// `Pool.compute` is asked for it, on any backend. Like `dask.delayed`.
///
/// ```swift
/// let a = Graph.value(3), b = Graph.value(4)
/// let sum = Graph.call("sum", { $0 + $1 }, a, b)          // nothing runs yet
/// let total = Graph.call(Jobs.double, sum)                // a remote task node
/// let (x, y) = try await pool.compute(sum, total)         // shared nodes run once
/// ```
///
/// Nodes are immutable and name their arguments when they are made, so a
/// graph can never contain a cycle.
public struct Delayed<Value: Sendable>: Sendable {
    let node: GraphNode

    init(_ node: GraphNode) { self.node = node }

    /// The node's label, as errors and `Graph.dot` show it.
    public var label: String { node.label }
    /// A number unique to the node within this process.
    public var id: Int { node.id }
}

/// What runs at a node.
enum NodeWork: Sendable {
    /// A value known when the graph was built.
    case value(any Sendable)
    /// A closure: only for the serial and threads backends.
    case local(@Sendable ([any Sendable]) throws -> any Sendable)
    /// A remote task: every backend.
    case remote(any RemoteNodeTask)
}

/// One node of a task graph, type-erased.
final class GraphNode: Sendable {
    private static let ids = Atomic<Int>(0)
    let id: Int
    let label: String
    // Safe: set in `init` and only read after, except by `deinit`, which
    // runs when no other reference to the node is left.
    nonisolated(unsafe) private(set) var arguments: [GraphNode]
    let work: NodeWork

    init(label: String?, arguments: [GraphNode], work: NodeWork, kind: String) {
        id = Self.ids.add(1, ordering: .relaxed).newValue
        self.label = label ?? "\(kind)#\(id)"
        self.arguments = arguments
        self.work = work
    }

    /// Releases the nodes only this one holds without recursion: each is
    /// emptied of its own arguments before it goes, so a chain of any
    /// length ends in a loop, not a million nested deinits.
    deinit {
        guard !arguments.isEmpty else { return }
        var pending = arguments
        arguments = []
        while var node = pending.popLast() {
            if isKnownUniquelyReferenced(&node) {
                pending.append(contentsOf: node.arguments)
                node.arguments = []
            }
        }
    }
}

/// Builds task graph nodes.
public enum Graph {
    /// A node holding `value`.
    public static func value<V: Sendable>(_ value: V, label: String? = nil) -> Delayed<V> {
        Delayed(GraphNode(label: label, arguments: [], work: .value(value), kind: "value"))
    }

    /// A node that calls `f` on the result of `a`.
    public static func call<A, R: Sendable>(
        _ label: String? = nil, _ f: @escaping @Sendable (A) throws -> R, _ a: Delayed<A>
    ) -> Delayed<R> {
        Delayed(
            GraphNode(label: label, arguments: [a.node], work: .local { args in try f(args[0] as! A) }, kind: "call"))
    }

    /// A node that calls `f` on the results of `a` and `b`.
    public static func call<A, B, R: Sendable>(
        _ label: String? = nil, _ f: @escaping @Sendable (A, B) throws -> R, _ a: Delayed<A>, _ b: Delayed<B>
    ) -> Delayed<R> {
        Delayed(
            GraphNode(
                label: label, arguments: [a.node, b.node],
                work: .local { args in try f(args[0] as! A, args[1] as! B) }, kind: "call"))
    }

    /// A node that calls `f` on the results of `a`, `b` and `c`.
    public static func call<A, B, C, R: Sendable>(
        _ label: String? = nil, _ f: @escaping @Sendable (A, B, C) throws -> R,
        _ a: Delayed<A>, _ b: Delayed<B>, _ c: Delayed<C>
    ) -> Delayed<R> {
        Delayed(
            GraphNode(
                label: label, arguments: [a.node, b.node, c.node],
                work: .local { args in try f(args[0] as! A, args[1] as! B, args[2] as! C) }, kind: "call"))
    }

    /// A node that calls `f` on the results of all of `nodes`, in order.
    public static func call<A, R: Sendable>(
        _ label: String? = nil, _ f: @escaping @Sendable ([A]) throws -> R, _ nodes: [Delayed<A>]
    ) -> Delayed<R> {
        Delayed(
            GraphNode(
                label: label, arguments: nodes.map(\.node),
                work: .local { args in try f(args.map { $0 as! A }) }, kind: "call"))
    }

    /// A node that runs remote `task` on the result of `input`: runs on
    /// every backend, processes included.
    public static func call<I, O>(_ task: RemoteTask<I, O>, _ input: Delayed<I>, label: String? = nil) -> Delayed<O> {
        Delayed(
            GraphNode(
                label: label, arguments: [input.node], work: .remote(RemoteNode(task: task) { $0[0] as! I }),
                kind: task.name))
    }

    /// A node that runs remote `task` on the results of `inputs`, as one
    /// array: runs on every backend, processes included.
    public static func call<E, O>(_ task: RemoteTask<[E], O>, _ inputs: [Delayed<E>], label: String? = nil) -> Delayed<
        O
    > {
        Delayed(
            GraphNode(
                label: label, arguments: inputs.map(\.node),
                work: .remote(RemoteNode(task: task) { $0.map { $0 as! E } }),
                kind: task.name))
    }
}
