(println `open
