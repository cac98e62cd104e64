"""The command line: argv and the whole sweep checked before any cell trains, one-line errors, the exit code."""
