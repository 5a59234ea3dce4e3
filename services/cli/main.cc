// taskgrid: the command-line client.
#include <signal.h>

#include <string>
#include <vector>

#include "services/cli/cli.h"

int main(int argc, char** argv) {
  // Signals are taken synchronously by the thread that cancels tasks; block
  // them before gRPC starts its threads.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return taskgrid::cli::RunCli(std::vector<std::string>(argv + 1, argv + argc));
}
