; loops return the value of the last body evaluation
(println (loop x '(1 2 3) (* x 10)))
(println (loopcount 3 'again))
(println (dotimes (i 4) i))
(println (loop x '() x))
(println (while nil 1))
