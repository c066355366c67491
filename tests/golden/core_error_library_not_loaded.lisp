; a library function called before (use ...) names the library to load (torch stays unimported)
(println "before")
(tokenizer_encode "hello")
