"""The stage runtime: how Forewarn runs its stages on Faust."""
