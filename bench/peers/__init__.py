"""python -m bench --peers (issue 15): ntorque and three other task queues in
one run, against the same hook receiver, each task one POST of the bench's
body. One module per peer (its worker's side and the bench's), the shared
bits in `common`, the runs in `run`, the figures and targets in `figures`.
"""
