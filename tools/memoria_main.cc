// memoria: the command-line tool. Subcommands are registered in tools/commands.h.
#include <cstdio>
#include <string>

#include "tools/commands.h"

int main(int argc, char** argv) { return memoria::RunCommandLine(argc, argv); }
