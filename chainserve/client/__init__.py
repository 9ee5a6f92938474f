"""The terminal client behind `chainserve chains|invoke|chat`: it talks HTTP only."""
