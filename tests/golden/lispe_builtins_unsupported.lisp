; an instruction of LispE's table that lispe_py does not provide says so, with its reason
(println (maybe (llist 1 2) "caught"))
(fopen "data.txt" "r")
