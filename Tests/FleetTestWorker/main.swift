import Fleet
import FleetTestTasks

// The worker program of the test suite: serves the test tasks.
try RemoteTasks.bootstrap(TestTasks.all)
print("FleetTestWorker serves the test suite's remote tasks; the processes backend starts it.")
