"""triplegain-fsm: the order-execution core of the TripleGain bot."""
