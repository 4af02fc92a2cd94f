"""The system controller: starts, supervises and drives the services of one mesh."""
