(loop x 42 (println x))
