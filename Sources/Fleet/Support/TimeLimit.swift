/// Runs `body` under a time limit, on `worker`.
///
/// `body` gets a token of its own (under `parent`, if any). If it is still
/// running after `timeout`, `expire` runs on the watchdog thread; when it
/// returns true (it won the race to report the outcome, and reported the
/// time-out), the body's token is cancelled and the worker abandoned, so
/// the backend replaces it. The body's result is returned either way; the
/// caller discards it if `expire` won.
///
/// Shared by submitted tasks and map items: one mechanism for every
/// time-out in the library.
func withTimeLimit<T>(
    _ timeout: Duration, parent: CancellationToken?, worker: WorkerContext,
    expire: @escaping @Sendable () -> Bool,
    _ body: (CancellationToken) -> T
) -> T {
    let token = CancellationToken(parent: parent)
    let handle = worker.handle
    let timer = Watchdog.shared.schedule(after: timeout) {
        if expire() {
            token.cancel()
            handle.abandon()
        }
    }
    let result = body(token)
    Watchdog.shared.cancel(timer)
    return result
}
