"""One file per part of the app: the panes (lab, runs, compare, machine) and their widgets."""
