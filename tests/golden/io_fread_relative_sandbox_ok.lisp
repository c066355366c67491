(setq lines (split (fread "io_sample.txt") "\n"))
(println (size lines) (car lines))
