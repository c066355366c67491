; A misspelled config key: the closest valid key is named (generation configs, model configs);
; (help "key") documents a config key: its type, default and meaning.
(use 'lispe_torch)
(setq model (torch_model_create "transformer" {"vocab_size":64 "hidden_size":16 "num_layers":1 "num_heads":2 "seed":1}))
(setq generator (torch_generator_create model "cpu"))
(println (catch (torch_model_create "transformer" {"vocab_sise":64})))
(help "max_length")
(help 'repetition_penalty)
(help "max_new_tokens")
(println (catch (help "temprature")))
; braces without key:value read as a set, which is not a config
(println (catch (torch_generator_config generator {"max_length" 4})))
(torch_generator_config generator {"max_lenght":4})
