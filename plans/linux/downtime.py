import sys; print("downtime: (todo)")
