module lightrelay/benchtool

go 1.19
