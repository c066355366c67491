(setq text (fread (+ _current "io_sample.txt")))
(println (size text) (split text "\n"))
(println (trim (@ (split text "\n") 1)))
