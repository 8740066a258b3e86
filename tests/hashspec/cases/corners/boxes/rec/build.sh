#!/bin/sh
. ../common/lib.sh
