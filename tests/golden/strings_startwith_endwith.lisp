(println (startwith "hello" "he") (startwith "hello" "lo") (startwith "hello" "") (endwith "hello" "lo") (endwith "lo" "hello"))
