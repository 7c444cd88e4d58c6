"""Reading the board: sysfs/procfs under an injectable root, MIDR -> uarch, ISA, clusters and classes, the TVM target."""
